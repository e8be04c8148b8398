"""A rich progress bar with the live numbers a user watches: reward, held-out accuracy, mixed-group share."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class ProgressConsole:
    def __init__(self, total: int, enabled: bool = True, console: Console | None = None) -> None:
        self.total, self.enabled = total, enabled
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: Any = None
        self._acc = float("nan")

    def __enter__(self) -> ProgressConsole:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]RL[/bold]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"), console=self.console, transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("rl", total=self.total, info="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, row: dict[str, Any]) -> None:
        """Called by the trainer with each log row (also warm-start and resume messages)."""
        if "warmstart/step" in row:
            self.console.log(f"warm start step {row['warmstart/step']}: loss {row['warmstart/loss']:.3f}")
            return
        if "resumed_from" in row:
            self.console.log(f"resumed from {row['resumed_from']}")
            if self._progress is not None:
                self._progress.update(self._task, completed=row["step"])
            return
        if "eval/mean/pass@1" in row:
            self._acc = row["eval/mean/pass@1"]
        if self._progress is None or "rollout/reward_mean" not in row:
            return
        info = (f"reward {row['rollout/reward_mean']:.3f}  eval {self._acc:.3f}  "
                f"mixed {row.get('sampler/mixed_share', 0):.2f}  tok {row.get('ledger/tokens', 0)}")
        self._progress.update(self._task, completed=row["step"], info=info)
