"""The collective weight sync's broadcast group is private: forming it, broadcasting in it and dropping it never
initialise or destroy torch.distributed's default group (which an in-process vLLM engine uses)."""

import socket
import threading

import torch
import torch.distributed as dist

from rollwise.train.weight_sync import Meta, flatten, new_group, worker_receive


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_private_gloo_group_broadcasts_the_weights_and_leaves_the_default_group_alone():
    before = dist.is_initialized()
    state = {"a.weight": torch.arange(6.0).reshape(2, 3), "b.bias": torch.tensor([7.0, -1.5]),
             "steps": torch.tensor([3, 4], dtype=torch.int64)}
    meta: Meta = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()]
    port, got, groups = _free_port(), {}, {}

    def worker() -> None:  # rank 1, as a rollout worker would: join, then receive one version
        groups[1] = new_group("127.0.0.1", port, 1, 2, "gloo")
        got.update(worker_receive(meta, torch.device("cpu"), groups[1]))

    th = threading.Thread(target=worker)
    th.start()
    groups[0] = new_group("127.0.0.1", port, 0, 2, "gloo")  # the trainer: serves the store
    for buf in flatten(state, meta):  # one buffer per dtype (float32, int64)
        groups[0].broadcast([buf]).wait()
    th.join(timeout=60)
    assert not th.is_alive()
    assert set(got) == set(state)
    for k, v in state.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v)
    assert dist.is_initialized() == before  # the default group was neither formed nor torn down
    groups.clear()
    assert dist.is_initialized() == before
