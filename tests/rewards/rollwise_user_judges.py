"""User-code judges the FAPO tests load by ``package.module:Class`` / ``package.module:function``."""

from __future__ import annotations


class FirstStep:
    """Calls every working wrong from step ``step`` on."""

    def __init__(self, step: int = 0) -> None:
        self.step = step

    def __call__(self, prompt: str, completion: str, reference: str) -> int:
        return self.step


def never_flawed(prompt: str, completion: str, reference: str) -> int:
    return -1


def stub_genrm(text: str) -> str:
    """A generative reward model stub: names the first step whose text holds 'bad', else -1."""
    for i, block in enumerate(text.split("</step_")[:-1]):
        if "bad" in block.rsplit(">", 1)[-1]:
            return f"The error is in step {i}. \\boxed{{{i}}}"
    return "all steps are fine: \\boxed{-1}"
