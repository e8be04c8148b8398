"""OpenEnv through its own client and protocol: the tests serve a small OpenEnv environment of their own with
OpenEnv's ``create_fastapi_app`` under uvicorn on 127.0.0.1 (loopback only), and play episodes through the
``openenv`` adapter, the agent loop and the collector: one WebSocket session per episode, the server's
observations as context, its rewards unchanged, a misbehaving server counted by fault kind and dropped."""

from __future__ import annotations

import math
import socket
import threading
import time
from typing import Any

import pytest

pytest.importorskip("openenv.core", reason="needs the openenv extra (pip install -e '.[openenv]')")
uvicorn = pytest.importorskip("uvicorn")

from openenv.core.env_server.http_server import create_fastapi_app  # noqa: E402
from openenv.core.env_server.interfaces import Environment  # noqa: E402
from openenv.core.env_server.types import Action, Observation, State  # noqa: E402

from rollwise.envs.collector import EpisodeCollector  # noqa: E402
from rollwise.envs.loop import AgentLoop, PlainFormat  # noqa: E402
from rollwise.envs.openenv_env import OpenEnvClient, OpenEnvKnobs  # noqa: E402
from rollwise.generation import SamplingParams  # noqa: E402
from rollwise.generation.scripted import ScriptedEngine  # noqa: E402
from rollwise.sampler_tables import build_pipeline  # noqa: E402
from rollwise.sampling import Budget  # noqa: E402
from rollwise.types import Prompt  # noqa: E402

PARAMS = SamplingParams(max_new_tokens=8, seed=0)
HANG = threading.Event()  # a hung step waits on it; set when the test is done


class SayAction(Action):
    message: str


class SayObservation(Observation):
    prompt: str = ""
    reward: Any = None  # any JSON value, so the tests can send what a hostile server would


class Countdown(Environment):
    """Say the number the server counts down from (seed % 3 + 1, so 1..3 turns): 'say N' each turn, reward 1
    when the policy said every number. seed 100 + k misbehaves at its first step in the way ``BAD[k]`` names."""

    SUPPORTS_CONCURRENT_SESSIONS = True
    BAD = ("raise", "nan", "inf", "too_big", "no_prompt", "hang", "text", "none")

    def __init__(self) -> None:
        super().__init__()
        self.left, self.bad, self.said = 0, "", []

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> SayObservation:
        seed = seed or 0
        self.bad = self.BAD[seed - 100] if 100 <= seed < 100 + len(self.BAD) else ""
        self.left, self.said = seed % 3 + 1, []
        return SayObservation(prompt=f"say {self.left}\n")

    def step(self, action: SayAction, timeout_s: float | None = None, **kwargs: Any) -> SayObservation:
        if self.bad == "raise":
            raise RuntimeError("environment crashed")
        if self.bad == "hang":
            HANG.wait(20)
        bad_reward = {"nan": math.nan, "inf": math.inf, "too_big": 5.0, "text": "1.0", "none": None}.get(self.bad, 0)
        if self.bad in ("nan", "inf", "too_big", "text", "none"):
            return SayObservation(prompt="x\n", reward=bad_reward, done=True)
        if self.bad == "no_prompt":
            return SayObservation(reward=None, done=False, metadata={"prompt": "hidden"}).model_copy(
                update={"prompt": None})
        self.said.append(action.message.strip())
        self.left -= 1
        if self.left == 0:
            ok = self.said == [str(n) for n in range(len(self.said), 0, -1)]
            return SayObservation(prompt="", reward=1.0 if ok else 0.0, done=True)
        return SayObservation(prompt=f"say {self.left}\n", reward=None, done=False)

    @property
    def state(self) -> State:
        return State(step_count=len(self.said))


@pytest.fixture(scope="module")
def server_url():
    """OpenEnv's own app for :class:`Countdown`, served by uvicorn on a free loopback port."""
    app = create_fastapi_app(Countdown, SayAction, SayObservation, max_concurrent_envs=16)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(400):  # bounded: at most ~20 s on a loaded machine
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the loopback OpenEnv server did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    HANG.set()
    server.should_exit = True
    thread.join(10)
    sock.close()


def sayer(tokenizer) -> ScriptedEngine:
    """Says the last number the context asks for ('say N')."""
    eos = tokenizer.eos_token_id

    def script(ids, j, call):
        text = tokenizer.decode(ids)
        toks = tokenizer.encode(text.rsplit("say ", 1)[1].split("\n")[0], add_special_tokens=False) + [eos]
        return toks, [-0.5] * len(toks), "stop"

    return ScriptedEngine(script, tokenizer=tokenizer)


def fmt(tokenizer) -> PlainFormat:
    return PlainFormat(lambda s: tokenizer.encode(s, add_special_tokens=False), (tokenizer.eos_token_id,))


def task(seed: int) -> Prompt:
    return Prompt(f"s{seed}", "", str(seed), {"seed": seed})


def test_episodes_through_the_servers_protocol(tokenizer, server_url):
    loop = AgentLoop(sayer(tokenizer), lambda: OpenEnvClient(server_url), fmt(tokenizer),
                     OpenEnvKnobs(url=server_url, timeout_s=20))
    eps = loop.run([task(2), task(0)], [0, 1], PARAMS)  # seed 2: count down from 3; seed 0: from 1
    assert [[t.text for t in e.turns] for e in eps] == [["3", "2", "1"], ["1"]]
    assert [[t.reward for t in e.turns] for e in eps] == [[0.0, 0.0, 1.0], [1.0]]
    assert [(e.finish, e.success, e.fault) for e in eps] == [("done", True, None)] * 2
    assert tokenizer.decode(eps[0].turns[-1].context_ids) == "say 3\n3say 2\n2say 1\n"


def test_a_turn_limit_ends_the_episode_and_its_session(tokenizer, server_url):
    env_box: list[OpenEnvClient] = []

    def make():
        env_box.append(OpenEnvClient(server_url))
        return env_box[-1]

    loop = AgentLoop(sayer(tokenizer), make, fmt(tokenizer), OpenEnvKnobs(url=server_url, max_turns=1, timeout_s=20))
    (ep,) = loop.run([task(2)], [0], PARAMS)
    assert (ep.finish, ep.num_turns, ep.fault) == ("max_turns", 1, None)
    client = env_box.pop().client
    del ep, loop
    for _ in range(200):  # the finalizer closes it in a thread of its own (bounded wait)
        if client._loop is None:
            break
        time.sleep(0.05)
    assert client._loop is None  # the finalizer closed the session the protocol could not


# OpenEnv's server writes NaN and inf as JSON null: on the last step that is a not_a_number fault, never a 0
@pytest.mark.parametrize("k,kind", [(0, "error"), (1, "not_a_number"), (2, "not_a_number"), (3, "out_of_range"),
                                    (4, "malformed"), (5, "timeout"), (6, "not_a_number"), (7, "not_a_number")])
def test_a_misbehaving_server_is_counted_and_dropped(tokenizer, server_url, k, kind):
    pool = [task(0), task(100 + k)]
    collector = EpisodeCollector(sayer(tokenizer), lambda: OpenEnvClient(server_url),
                                 OpenEnvKnobs(url=server_url, timeout_s=20 if kind != "timeout" else 1.0), pool,
                                 fmt(tokenizer), PARAMS)
    pipe = build_pipeline(preset="uniform", pool_size=2, group_size=2, batch_prompts=2, total_steps=2, seed=0)
    out = collector.collect(pipe, 0, Budget(4), seed=0, version=0)
    m = collector.metrics()
    assert (m[f"env/faults_{kind}"], m["env/episodes"], m["env/success"]) == (2, 4, 1.0), \
        ({k: v for k, v in m.items() if "faults" in k and v}, [e.fault_detail for e in collector.last_episodes])
    assert sorted(out.rollouts) == [0] and len(out.rollouts[0]) == 2  # task 1 never reaches the sampler


def test_an_unreachable_server_is_an_error_fault(tokenizer):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    loop = AgentLoop(sayer(tokenizer), lambda: OpenEnvClient(url, connect_timeout_s=2), fmt(tokenizer),
                     OpenEnvKnobs(url=url, timeout_s=10))
    (ep,) = loop.run([task(0)], [0], PARAMS)
    assert (ep.finish, ep.fault) == ("fault", "error") and "connect" in ep.fault_detail.lower()


def test_tasks_are_seeds_from_a_stream_per_split():
    env = OpenEnvClient()
    train, held = env.tasks("train", 5, 0), env.tasks("eval", 5, 0)
    assert [t.meta["seed"] for t in train] == [t.meta["seed"] for t in env.tasks("train", 5, 0)]
    assert not {t.meta["seed"] for t in train} & {t.meta["seed"] for t in held}


class Wire:
    """A client that hands the adapter what a non-OpenEnv server's JSON could carry (NaN, Infinity)."""

    def __init__(self, reward: Any) -> None:
        self.reward = reward

    def reset(self, seed):
        return type("R", (), {"observation": {"prompt": "say 1\n"}, "reward": None, "done": False})()

    def step(self, action):
        return type("R", (), {"observation": {"prompt": ""}, "reward": self.reward, "done": True})()

    def close(self):
        pass


@pytest.mark.parametrize("reward,kind", [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "inf")])
def test_nan_and_inf_on_the_wire_are_their_own_faults(tokenizer, monkeypatch, reward, kind):
    monkeypatch.setattr(OpenEnvClient, "_connect", lambda self: Wire(reward))
    loop = AgentLoop(sayer(tokenizer), OpenEnvClient, fmt(tokenizer), OpenEnvKnobs(timeout_s=10))
    (ep,) = loop.run([task(0)], [0], PARAMS)
    assert (ep.finish, ep.fault) == ("fault", kind)


def test_a_run_trains_through_the_server(tmp_path, server_url):
    """``[env] type = "openenv"`` through the trainer: the embedded model (no scripted player, so no warm start)
    plays the loopback server's episodes, its turns reach the update (a random-init policy says no right number,
    so every reward is 0 and the weights need not move: this is the plumbing) and the rows carry ``env/`` and eval
    metrics."""
    from pathlib import Path

    from rollwise.config import load_config
    from rollwise.envs.collector import EpisodeCollector
    from rollwise.logging import read_metrics
    from rollwise.train.trainer import Trainer

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs" / "smoke.toml", [
        f"--run.out_dir={tmp_path}", "--env=openenv", f"--env.url={server_url}", "--env.timeout_s=20",
        "--env.max_tokens=48", "--warmstart.enabled=false", "--task.train_size=8", "--task.eval_size=2",
        "--sampler.batch_prompts=2", "--sampler.group_size=2", "--generation.max_new_tokens=2",
        "--trainer.steps=2", "--trainer.eval_every=2", "--trainer.checkpoint_every=0", "--trainer.eval_samples=1",
        "--run.threads=1", "--algo.lr=1e-2"])
    t = Trainer(cfg)
    assert isinstance(t.collector, EpisodeCollector)
    t.train()
    t.close()
    rows = read_metrics(t.run_dir)
    steps = [r for r in rows if "env/success" in r]
    assert [r["step"] for r in steps] == [1, 2]
    # 2 tasks x 2 episodes a step; the server counts down 1..3 turns, every episode ends 'done'
    assert all(r["env/episodes"] == 4 and 1 <= r["env/turns_mean"] <= 3 for r in steps), steps
    assert all(sum(r[k] for k in r if k.startswith("env/faults_")) == 0 for r in steps)
    assert any(r["sampler/rollouts_trained"] > 0 for r in steps)
    evals = [r for r in rows if "eval/openenv/success" in r]
    assert [r["step"] for r in evals] == [0, 2] and evals[0]["eval/openenv/episodes"] == 2
