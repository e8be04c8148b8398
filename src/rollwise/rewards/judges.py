"""Step judges for FAPO (:mod:`rollwise.rewards.fapo`): read a rollout whose final answer is right and say where
its working first goes wrong.

A judge is a callable ``(prompt, completion, reference) -> int``: the index of the earliest wrong step, or -1
when every step is right. ``prompt`` is the problem text (the pool prompt, without template or in-context
examples), ``completion`` the text the verifier scored (a forced answer prefix included), ``reference`` the
reference answer. A judge that cannot read a rollout raises; the shaper counts that as a skip and leaves the
reward alone. Judges are looked up by name in :data:`JUDGES`, or as ``package.module:Class`` (a class is
instantiated with the shaper's judge options, a plain function is used as it is).

Built in:

- ``carries``: rule-based, for the arith suite's worked answers ``<carries>|<answer>`` (and the unprompted
  ``#<carries>|<answer>``), checked against the true carries of :func:`rollwise.data.scratch.carry_scratchpad`.
  The steps are the working's characters, in the order written: the sign of a difference, one carry or borrow
  per column (least-significant first), and the ``,`` between the partial products of a product (for a chain
  sum ``sum(a,b,...)=``, whatever working ``carry_scratchpad`` writes: its running totals). The earliest
  wrong step is the first character that differs; a working that stops early or runs on is wrong at the first
  missing or extra character. A direct answer (no ``|``) has no working and is never flawed.
- ``model``: a generative reward model (FAPO's GenRM, arXiv:2510.22543) asked for the first wrong step. It
  wraps a callable ``prompt text -> generated text`` (tests use a stub), a ``package.module:function`` naming
  one, or a local Hugging Face checkpoint directory (loaded with ``local_files_only``: never a download).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rollwise.data.scratch import carry_scratchpad
from rollwise.registry import Registry, import_object

__all__ = ["JUDGES", "CarriesJudge", "Judge", "ModelJudge", "get_judge", "split_steps"]


class Judge(Protocol):
    def __call__(self, prompt: str, completion: str, reference: str) -> int: ...


JUDGES: Registry[Any] = Registry("judge")
JUDGES.register("carries", "rollwise.rewards.judges:CarriesJudge",
                doc="rule-based: the carries of a worked arith answer against the true ones")
JUDGES.register("model", "rollwise.rewards.judges:ModelJudge",
                doc="generative reward model asked for the earliest wrong step (callable or local HF model)")


def get_judge(name: str, **options: Any) -> Judge:
    """The judge ``name`` (registered or ``package.module:Class``), built with ``options``."""
    entry = JUDGES.get(name)
    if isinstance(entry, type):
        return entry(**options)
    if options:
        raise TypeError(f"judge {name!r} is a function and takes no options, got {sorted(options)}")
    if not callable(entry):
        raise TypeError(f"judge {name!r} must be a class or a callable, got {type(entry).__name__}")
    return entry


class CarriesJudge:
    """Rule-based judge of worked arith answers (module docstring); a direct answer is never flawed."""

    def __call__(self, prompt: str, completion: str, reference: str) -> int:
        text = completion.strip()
        if "|" not in text:
            return -1  # a direct answer: no working to be wrong
        written = text.rsplit("|", 1)[0].strip().removeprefix("#")  # '#' only marks unprompted working
        true = carry_scratchpad(prompt.strip().removesuffix("#"), int(reference)).rsplit("|", 1)[0]
        for i, (a, b) in enumerate(zip(written, true)):
            if a != b:
                return i
        return -1 if len(written) == len(true) else min(len(written), len(true))


# ---- generative reward model ------------------------------------------------------------------------------
GENRM_TEMPLATE = (
    "Below is a problem and a solution whose final answer is correct, split into numbered steps.\n"
    "Check each step in order. Reply with the index of the first step that contains an error, or -1 if every "
    "step is correct, as \\boxed{{index}} at the end of your reply.\n\n"
    "Problem:\n{problem}\n\nReference answer: {reference}\n\nSolution:\n{steps}\n"
)
_BOXED = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")


def split_steps(completion: str) -> list[str]:
    """A solution's steps: its paragraphs (blank-line separated), else its non-empty lines."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", completion.strip()) if p.strip()]
    if len(paragraphs) > 1:
        return paragraphs
    return [line.strip() for line in completion.strip().splitlines() if line.strip()] or [completion.strip()]


class ModelJudge:
    """A generative reward model asked for the earliest wrong step (FAPO-GenRM style, arXiv:2510.22543).

    ``model``: a callable ``prompt text -> generated text``, a ``package.module:function`` naming one, or a
    local HF checkpoint directory (greedy decoding, ``max_new_tokens``). The reply's last ``\\boxed{k}`` is the
    answer; a reply without one, or with k outside [-1, steps), raises (a counted skip in the shaper).
    """

    def __init__(self, model: str | Callable[[str], str] | None = None, max_new_tokens: int = 256,
                 template: str = GENRM_TEMPLATE) -> None:
        if model is None:
            raise ValueError("judge 'model' needs a model: set task.reward_shaping.judge_model to a local HF "
                             "checkpoint directory or a package.module:function (prompt text -> reply)")
        self.template, self.max_new_tokens = template, max_new_tokens
        if callable(model):
            self.generate = model
        elif Path(model).is_dir():
            self.generate = _hf_generate(model, max_new_tokens)
        elif ":" in model:
            self.generate = import_object(model)
        else:
            raise FileNotFoundError(f"judge model {model!r} is neither a local checkpoint directory nor a "
                                    "package.module:function")

    def prompt(self, problem: str, steps: list[str], reference: str) -> str:
        body = "\n".join(f"<step_{i}>\n{s}\n</step_{i}>" for i, s in enumerate(steps))
        return self.template.format(problem=problem, reference=reference, steps=body)

    def __call__(self, prompt: str, completion: str, reference: str) -> int:
        steps = split_steps(completion)
        reply = str(self.generate(self.prompt(prompt, steps, reference)))
        found = _BOXED.findall(reply)
        if not found:
            raise ValueError(f"judge reply has no \\boxed{{index}}: {reply[-200:]!r}")
        index = int(found[-1])
        if not -1 <= index < len(steps):
            raise ValueError(f"judge named step {index}, but the solution has {len(steps)} steps")
        return index


def _hf_generate(path: str, max_new_tokens: int) -> Callable[[str], str]:
    """Greedy generation with a local HF causal LM (imported only when a model judge is built from a path)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()

    def generate(text: str) -> str:
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                           add_generation_prompt=True)
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
        return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    return generate
