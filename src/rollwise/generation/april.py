"""APRIL: active partial rollouts (Zhou et al., arXiv 2509.18521; RLsys-Foundation/APRIL, a slime fork).

The long tail of response lengths leaves the decoder idle while a few long rollouts finish. APRIL over-provisions
the step's groups, stops generation (``Decision.ABORT`` from a step callback) as soon as a target number of
*groups* has finished, and keeps every unfinished rollout in a FIFO buffer; the next step resumes them first
(engine ``prefixes``), so no generated token is thrown away.

How the user over-provisions: set ``sampler.batch_prompts`` to ``over_sample`` x the groups to train per step
(APRIL's Qwen3-4B script: 64 requested for 32 trained). Each call keeps at most ``len(keys)`` groups in flight,
buffered groups first (FIFO), then the requested prompts in order; a requested prompt that does not fit behind
the buffer is not generated this step (it gets no completions, ``april_skipped``). Generation stops once
``ceil(len(keys) / over_sample)`` groups have finished. With this rule the buffer never holds more than
``len(keys) - target`` groups.

Choices (spec section 2; APRIL's code keeps no logprobs or versions, the spec recommends storing them):
- A partial rollout is stored with its tokens, behaviour logprobs and per-token weight versions; its resume
  keeps them (``Prefix``), so ``Completion.versions`` says which weights sampled each token. The collector makes
  ``Rollout.policy_version`` the oldest of them, which marks the rollout off-policy and makes the update apply
  the decoupled IS weight exp(log pi_old - log mu) per token (capped by ``algo.behaviour_is_cap``).
- A group is returned only when every member finished ("stop" / "length"); finished members of a partly
  finished group wait in the buffer with it and are not regenerated. Every group that finished by the check
  that reached the target is returned (possibly more than the target when several finish at once).
- A buffered group is resumed at the next step, never in a later call of the same step (successive rounds).
  A requested prompt whose group is buffered is served by that group (its completions come back as the
  requested prompt's); other resumed groups come back through ``StrategyResult.extra``.
- Tokens are charged (budget and ledger) when the engine decodes them (the engine's own count, strategy.py): a
  rollout aborted at step s is charged for its first tokens at s and for the rest when it resumes. Tokens in the
  buffer when training stops were charged and are never trained (``april_buffer_tokens`` says how many).
- Under a seeded engine a resumed row redraws the uninterrupted row's tokens only with the same seed and row
  position; the collector changes the seed every call, so in training the resumed part is a fresh draw from the
  newer policy (a valid sample of the mixture the IS weight corrects for).
- The stop counts the rows the engine decodes together: the HF engine runs a step callback per chunk of
  ``generation.batch_size`` rows and an ABORT leaves later chunks unstarted, so a config whose step requests more
  rows than one chunk is refused at load (``generation.batch_size``).
- Sync and async: the buffer lives inside the strategy, in the trainer (sync) or in each rollout worker
  (async, where "step" is the weight version a round is planned under: a buffered group resumes in the first
  round under newer weights). A worker has no task: it keeps the problems of its buffered groups
  (``pending_keys``) to verify them when they finish, and checkpoints them with the buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from rollwise.components import Knobs
from rollwise.generation.base import Completion, Decision, Engine, Prefix, SamplingParams, StepControl, StepView
from rollwise.generation.strategy import KEY, RolloutStrategy, StrategyResult

DONE = ("stop", "length")  # finish reasons of a finished rollout (anything else is resumed)


@dataclass
class PartialGroup:
    """One prompt's group in flight or in the buffer: ``members[j]`` is finished (reason stop / length) or a
    partial rollout (reason "abort", possibly empty: never started)."""

    key: int  # pool index
    prompt: list[int]  # prompt token ids
    members: list[Completion]
    start: int  # step at which the group was first generated
    step: int = -1  # step at which it was last aborted (resumed only at a later step)

    @property
    def finished(self) -> bool:
        return all(c.finish_reason in DONE for c in self.members)


@dataclass
class _Stats:
    """Counters of the current step (summed over its calls)."""

    step: int = -1
    target: int = 0
    finished_groups: int = 0
    resumed: int = 0  # rows continued from a stored partial rollout
    aborted: int = 0  # rows cut by the stop (partial or never started)
    skipped: int = 0  # requested prompts not generated (no room behind the buffer)
    tokens: int = 0  # tokens of the returned rollouts
    offpolicy_tokens: int = 0  # of which sampled by older weights
    extra: dict[str, float] = field(default_factory=dict)


class AprilStrategy(RolloutStrategy):
    """Over-provision, stop once enough groups finished, resume the unfinished ones next step (see module doc)."""

    class Config(Knobs):
        over_sample: float = Field(2.0, ge=1.0, allow_inf_nan=False, description=(
            "requested prompts per trained group (finite, >= 1): generation stops once ceil(requested / over_sample) "
            "groups "
            "finished; set sampler.batch_prompts to over_sample x the groups to train (APRIL: 2, i.e. "
            "over_sampling_batch_size 64 for rollout_batch_size 32)"))
        check_every: int = Field(1, ge=1, description=(
            "decode steps between counts of the finished groups (1 = stop at the first step the target is met; "
            "APRIL checks as each group's request returns); below max_new_tokens, else the stop never comes"))

    over_sample: float
    check_every: int

    @classmethod
    def check_config(cls, knobs: Any, cfg: Any) -> None:
        """The stop is checked at decode steps check_every, 2 check_every, ...; a row is live at most
        max_new_tokens - 1 steps, so a check_every at or past the cap never stops anything (APRIL = plain)."""
        M = cfg.generation.max_new_tokens
        if knobs.check_every >= M:
            raise ValueError(f"{KEY}.check_every: the stop is first checked after {knobs.check_every} decode steps, "
                             f"never reached under generation.max_new_tokens = {M}, so APRIL would stop nothing; "
                             f"set check_every below {M}")

    def setup(self) -> None:
        self.buffer: list[PartialGroup] = []  # FIFO: oldest interrupted group first
        self._stats = _Stats()

    # ------------------------------------------------------------------ one call
    def generate(self, engine: Engine, keys: list[int], prompts: list[list[int]], counts: list[int],
                 params: SamplingParams, *, step: int) -> StrategyResult:
        if self._stats.step != step:
            self._stats = _Stats(step=step)
        groups, slots = self._plan(keys, prompts, counts, step)
        target = math.ceil(len(keys) / self.over_sample)
        self._stats.target += target
        entries, rows = self._requests(groups)
        control = StepControl(self._stopper(rows, target), every=self.check_every)
        out = engine.generate([e[0] for e in entries], [e[1] for e in entries], params,
                              prefixes=[e[2] for e in entries], control=control) if entries else []
        for (g, j), c in zip(rows, (c for cs in out for c in cs)):
            self._stats.aborted += c.finish_reason not in DONE
            groups[g].members[j] = c
        return self._collect(groups, slots, len(keys), step)

    def _plan(self, keys: list[int], prompts: list[list[int]], counts: list[int],
              step: int) -> tuple[list[PartialGroup], list[int | None]]:
        """The call's groups in flight (buffered first, FIFO, then requested) and each one's requested slot."""
        ready = [g for g in self.buffer if g.step < step]
        self.buffer = [g for g in self.buffer if g.step >= step]
        ready, stay = ready[: max(len(keys), 1)], ready[max(len(keys), 1):]  # at most len(keys) in flight
        self.buffer = stay + self.buffer
        where = {(k, tuple(p)): i for i, (k, p) in enumerate(zip(keys, prompts))}
        slots: list[int | None] = [where.get((g.key, tuple(g.prompt))) for g in ready]
        served = {s for s in slots if s is not None}
        room = max(len(keys) - len(ready), 0)
        fresh = [i for i in range(len(keys)) if i not in served and counts[i] > 0]
        self._stats.skipped += max(len(fresh) - room, 0)
        groups = list(ready)
        for i in fresh[:room]:
            members = [Completion([], [], "abort") for _ in range(counts[i])]  # not started yet
            groups.append(PartialGroup(keys[i], list(prompts[i]), members, step))
            slots.append(i)
        return groups, slots

    def _requests(self, groups: list[PartialGroup]) -> tuple[list[tuple[list[int], int, Prefix | None]],
                                                                 list[tuple[int, int]]]:
        """Engine entries (prompt, count, prefix) and each row's (group, member): a fresh group is one entry of
        ``n`` rows; each unfinished member of a buffered group is its own entry continuing its partial tokens."""
        entries: list[tuple[list[int], int, Prefix | None]] = []
        rows: list[tuple[int, int]] = []
        for g, grp in enumerate(groups):
            todo = [j for j, c in enumerate(grp.members) if c.finish_reason not in DONE]
            if all(not grp.members[j].token_ids for j in todo) and len(todo) == len(grp.members):
                entries.append((grp.prompt, len(todo), None))  # nothing started: one entry, shared prefill
                rows += [(g, j) for j in todo]
                continue
            for j in todo:
                c = grp.members[j]
                prefix = Prefix(list(c.token_ids), list(c.logprobs), list(c.versions)) if c.token_ids else None
                self._stats.resumed += prefix is not None
                entries.append((grp.prompt, 1, prefix))
                rows.append((g, j))
        return entries, rows

    def _stopper(self, rows: list[tuple[int, int]], target: int) -> Any:
        """The step callback: ABORT the whole call once ``target`` groups have every member finished."""
        by_group: dict[int, list[int]] = {}  # every group in flight has a member to decode
        for r, (g, _) in enumerate(rows):
            by_group.setdefault(g, []).append(r)

        def stop(view: StepView) -> Decision | None:
            done = sum(all(view.finished.get(r) in DONE for r in rs) for rs in by_group.values())
            return Decision.ABORT if done >= target else None

        return stop

    def _collect(self, groups: list[PartialGroup], slots: list[int | None], n_keys: int,
                 step: int) -> StrategyResult:
        """Finished groups out (requested slot, else ``extra``), the others into the buffer."""
        res = StrategyResult([[] for _ in range(n_keys)])
        for grp, slot in zip(groups, slots):
            if not grp.finished or (slot is None and grp.key in res.extra
                                    and res.extra[grp.key][0] != grp.prompt):
                grp.step = step
                self.buffer.append(grp)
                continue
            for c in grp.members:
                if grp.start < step:
                    c.meta["april_start_step"] = grp.start
                self._stats.tokens += len(c.token_ids)
                self._stats.offpolicy_tokens += sum(v < step for v in c.versions)
            self._stats.finished_groups += 1
            if slot is not None:
                res.completions[slot] = list(grp.members)
            elif grp.key in res.extra:
                res.extra[grp.key][1].extend(grp.members)
            else:
                res.extra[grp.key] = (list(grp.prompt), list(grp.members))
        return res

    # ------------------------------------------------------------------ books
    def pending_keys(self) -> set[int]:
        return {g.key for g in self.buffer}

    def metrics(self) -> dict[str, float]:
        s = self._stats
        return {
            "april_offpolicy_share": s.offpolicy_tokens / max(s.tokens, 1),
            "april_buffer_groups": len(self.buffer),
            "april_buffer_rows": sum(c.finish_reason not in DONE for g in self.buffer for c in g.members),
            "april_buffer_tokens": sum(len(c.token_ids) for g in self.buffer for c in g.members),
            "april_resumed": s.resumed,
            "april_aborted": s.aborted,
            "april_skipped": s.skipped,
            "april_target": s.target,
            "april_finished_groups": s.finished_groups,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": [{"key": g.key, "prompt": list(g.prompt), "start": g.start, "step": g.step,
                            "members": [_dump(c) for c in g.members]} for g in self.buffer]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer = [PartialGroup(g["key"], list(g["prompt"]), [Completion(**m) for m in g["members"]],
                                    g["start"], g["step"]) for g in state.get("buffer", [])]
        self._stats = _Stats()


def _dump(c: Completion) -> dict[str, Any]:
    """The fields a buffered completion needs (APRIL asks the engine for no top-k, entropy or hidden states)."""
    return {"token_ids": list(c.token_ids), "logprobs": list(c.logprobs), "finish_reason": c.finish_reason,
            "text": c.text, "versions": list(c.versions), "prefix_len": c.prefix_len, "meta": dict(c.meta)}
