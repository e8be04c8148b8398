"""How the trainer's weights reach the rollout workers in async mode (``async.weight_sync``), behind one
interface: the trainer side ``publish(state, version)`` / ``latest()`` / ``on_restart()`` / ``close()``, the
worker side the ``worker_*`` functions a :class:`RolloutWorker` calls.

- ``object_store`` (default): one ``ray.put`` per version, shared by every worker; each round carries the
  newest reference, so a fresh or restarted worker fetches it itself. Right for CPU workers and across nodes.
- ``collective``: the trainer (rank 0) and the workers form a torch.distributed process group and every
  version is one broadcast per dtype of a flat buffer from rank 0 (NCCL between GPUs, the weight path of
  verl / OpenRLHF / slime; gloo on CPU, which the tests use). A restarted worker is a new process outside the
  group, so the group is re-formed (every member leaves and joins a new one on a new port) and the newest
  weights are broadcast again before work is sent to it; the trainer checks the workers' processes before
  each broadcast, so a dead member rarely stalls one, and a member that dies *during* a broadcast fails it:
  the trainer then waits out the restart, re-forms the group and broadcasts the same version again (up to
  ``MAX_BROADCAST_TRIES`` times), as the object-store sync lets a restarted worker fetch the weights itself.
  The backend follows the trainer's weights: NCCL when they are on a GPU (the workers' engines must be too),
  gloo otherwise; the rendezvous is the trainer node's address, so workers on other nodes of a Ray cluster
  join it.

Ray and torch.distributed are imported only here and only in async mode.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

import torch

CONTROL = "control"  # the workers' concurrency group for weights and stats (rounds run in the default one)
GROUP_TIMEOUT = timedelta(seconds=120)  # a collective that waits longer on a member fails instead of hanging
MAX_BROADCAST_TRIES = 4  # broadcasts of one version that a member's death may fail before the run stops

Meta = list[tuple[str, tuple[int, ...], str]]  # (name, shape, dtype) of each tensor, in broadcast order


class ObjectStoreSync:
    """Weights through Ray's object store: one ``ray.put`` per version."""

    reforms = failed_broadcasts = 0  # the collective's group re-formations and cut broadcasts (none here)

    def __init__(self, ray: Any, workers: list[Any], ask: Any) -> None:
        self.ray, self.workers = ray, workers
        self._latest: tuple[Any, int] | None = None

    def publish(self, state: dict[str, torch.Tensor], version: int) -> None:
        ref = self.ray.put({k: v.to("cpu") for k, v in state.items()})
        self._latest = (ref, version)
        for w in self.workers:
            w.set_weights.options(concurrency_group=CONTROL).remote(ref, version)

    def latest(self) -> tuple[list[Any], int] | None:
        """([reference], version) of the newest weights for a round to carry (the list keeps Ray from
        resolving the reference into the call)."""
        return ([self._latest[0]], self._latest[1]) if self._latest is not None else None

    def on_restart(self) -> None:
        """Nothing to do: the re-sent round carries the newest reference."""

    def close(self) -> None:
        self._latest = None


class CollectiveSync:
    """Weights by a collective broadcast from the trainer (rank 0) to the workers (ranks 1..n), in a process group
    of its own (``new_group``): torch.distributed's default group is left to whoever else uses it in the process
    (an in-process vLLM engine does)."""

    def __init__(self, ray: Any, workers: list[Any], ask: Any) -> None:
        self.ray, self.workers, self.ask = ray, workers, ask
        self.group: Any = None  # the broadcast group, formed at the first publish
        self._last: tuple[list[torch.Tensor], Meta, int] | None = None  # the newest broadcast, kept for a restart
        self._pids: list[int] = []  # the workers' processes when the group formed (none yet)
        self._broken = False  # a broadcast failed: the group must re-form even if no process changed yet
        self.backend = ""
        self.reforms = 0
        self.failed_broadcasts = 0  # broadcasts a member's death cut short (each was sent again)

    def _ensure(self, backend: str) -> bool:
        """Form the group, or re-form it if a worker's process changed (a restart) or a broadcast failed since;
        True if it did."""
        pids = [int(p) for p in self.ask("pid")]  # waits out a restart in progress
        if pids == self._pids and backend == self.backend and not self._broken:
            return False
        self.reforms += bool(self._pids)
        self._form(pids, backend)
        self._broken = False
        return True

    def _form(self, pids: list[int], backend: str) -> None:
        """Rendezvous on a free port of the trainer's node address: every worker joins while the trainer does."""
        from ray.util import get_node_ip_address

        self.group = None  # the old group (if any) goes with its last reference
        addr = get_node_ip_address()  # 127.0.0.1 under the private local Ray
        with socket.socket() as s:
            s.bind((addr, 0))
            port = s.getsockname()[1]
        world = len(self.workers) + 1
        refs = [w.join_group.options(concurrency_group=CONTROL).remote(addr, port, i + 1, world, backend)
                for i, w in enumerate(self.workers)]
        self.group = new_group(addr, port, 0, world, backend)  # the store's server: waits for every worker
        self.ray.get(refs)
        self._pids, self.backend = pids, backend

    def publish(self, state: dict[str, torch.Tensor], version: int) -> None:
        backend = "nccl" if next(iter(state.values())).is_cuda else "gloo"  # NCCL between GPUs only
        meta: Meta = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()]
        self._last = (flatten(state, meta), meta, version)  # flatten copies the weights: a snapshot of this version
        self._send(backend)

    def _send(self, backend: str) -> None:
        """Broadcast the newest version, in a group of the workers' current processes; a member that dies
        during the broadcast fails it (an error on the trainer's side, the member's call lost): wait out its
        restart, re-form and send again."""
        assert self._last is not None
        for tries in range(1, MAX_BROADCAST_TRIES + 1):
            try:
                self._ensure(backend)  # a death during the rendezvous fails it the same way
                self._broadcast(*self._last)
                return
            except Exception as exc:  # gloo/NCCL: peer closed or timed out; Ray: the member's actor died
                if tries == MAX_BROADCAST_TRIES:
                    raise RuntimeError(f"the weight broadcast of version {self._last[2]} failed {tries} times; "
                                       f"last: {' '.join(str(exc).split())[:200]}") from None
                self.failed_broadcasts += 1
                self._broken = True

    def _broadcast(self, bufs: list[torch.Tensor], meta: Meta, version: int) -> None:
        refs = [w.receive_weights.options(concurrency_group=CONTROL).remote(meta, version) for w in self.workers]
        for buf in bufs:
            self.group.broadcast([buf]).wait()  # root rank 0 (the default options)
        self.ray.get(refs)

    def latest(self) -> tuple[list[Any], int] | None:
        return None  # workers hold the newest weights after every broadcast; rounds carry no reference

    def on_restart(self) -> None:
        """A worker was restarted: re-form the group and broadcast the newest weights again (unless a publish
        since the restart did both)."""
        if self._pids and self._last is not None and self._ensure(self.backend):
            self._send(self.backend)  # in the group just formed (re-formed again only if another member died)

    def close(self) -> None:
        self.group = None


WEIGHT_SYNCS = {"object_store": ObjectStoreSync, "collective": CollectiveSync}


# ------------------------------------------------------------------ both sides
def flatten(state: dict[str, torch.Tensor], meta: Meta) -> list[torch.Tensor]:
    """One contiguous buffer per dtype, tensors in ``meta`` order: [sum of numels]."""
    out = []
    for dtype in sorted({d for _, _, d in meta}):
        out.append(torch.cat([state[k].detach().reshape(-1) for k, _, d in meta if d == dtype]))
    return out


def unflatten(bufs: list[torch.Tensor], meta: Meta) -> dict[str, torch.Tensor]:
    """Inverse of ``flatten``: the named tensors, views into the buffers."""
    state: dict[str, torch.Tensor] = {}
    for dtype, buf in zip(sorted({d for _, _, d in meta}), bufs):
        at = 0
        for k, shape, d in meta:
            if d != dtype:
                continue
            n = int(torch.Size(shape).numel())
            state[k] = buf[at : at + n].view(shape)
            at += n
    return state


# ------------------------------------------------------------------ worker side
def new_group(addr: str, port: int, rank: int, world: int, backend: str) -> Any:
    """A process group of ``world`` members over a TCP store served by rank 0 at ``addr:port``, private to its
    holder: not torch.distributed's default group, so forming, re-forming or dropping it never touches another
    user's (an in-process vLLM engine's) group. Gloo on CPU, NCCL between GPUs."""
    import torch.distributed as dist

    store = dist.TCPStore(addr, port, world, is_master=rank == 0, timeout=GROUP_TIMEOUT)
    if backend == "nccl":
        return dist.ProcessGroupNCCL(store, rank, world)
    return dist.ProcessGroupGloo(store, rank, world, GROUP_TIMEOUT)


def worker_receive(meta: Meta, device: torch.device, group: Any) -> dict[str, torch.Tensor]:
    """Take part in the trainer's broadcast of one version in ``group``; return the state dict."""
    bufs = []
    for dtype in sorted({d for _, _, d in meta}):
        n = sum(int(torch.Size(s).numel()) for _, s, d in meta if d == dtype)
        buf = torch.empty(n, dtype=getattr(torch, dtype), device=device)
        group.broadcast([buf]).wait()
        bufs.append(buf)
    return unflatten(bufs, meta)
