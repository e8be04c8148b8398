"""Command line: ``rollwise train | eval | report | samplers | recipes | envs | swarm | config show | bench |
model import``."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rollwise.cli_lists import envs, recipes, samplers
from rollwise.config import ConfigError, describe, dump_toml, load_config


class UserError(Exception):
    """Marker base for errors that are the user's to fix (printed as one line, no traceback)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input (config, data, run directory, verifier, non-finite training), not
    a rollwise bug: the CLI prints their message on one line and exits 1 or 2."""
    from rollwise.train.checkpoint import CheckpointError
    from rollwise.train.rundir import RunDirError
    from rollwise.train.trainer import TrainingError

    found: list[type[BaseException]] = [ConfigError, RunDirError, CheckpointError, TrainingError, UserError]
    for module, name in (("rollwise.train.rollout", "VerifierFailureError"), ("rollwise.rewards.base",
                         "RewardRangeError"), ("rollwise.data.loaders", "DatasetError"),
                         ("rollwise.train.model", "ModelLoadError"),
                         ("rollwise.train.gguf", "ModelImportError")):
        cls = getattr(__import__(module, fromlist=[name]), name, None)
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


def print_error(message: object) -> None:
    """A red error on stderr, plain text: it may quote user text with brackets, which must not be rich markup."""
    Console(stderr=True).print(str(message), style="red", markup=False, highlight=False, soft_wrap=True)


def config_warnings_as_lines(shown: Any) -> Any:
    """A ``warnings.showwarning`` that prints a ``ConfigWarning`` as one yellow ``warning: ...`` line on stderr
    (no file and line of the warning's source) and hands every other warning to ``shown``."""
    from rollwise.config_checks import ConfigWarning

    def show(message: Any, category: Any, *rest: Any, **kw: Any) -> None:
        if issubclass(category, ConfigWarning):
            Console(stderr=True).print(f"warning: {message}", style="yellow", markup=False, highlight=False,
                                       soft_wrap=True)
        else:
            shown(message, category, *rest, **kw)

    return show


class _App(typer.Typer):
    """Typer app whose unexpected errors keep their traceback and ask for a bug report; user errors are one
    line each (see ``user_errors``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import warnings

        warnings.showwarning = config_warnings_as_lines(warnings.showwarning)
        try:
            return super().__call__(*args, **kwargs)
        except SystemExit:
            raise
        except Exception as exc:
            if isinstance(exc, user_errors()):
                print_error(exc)
                raise SystemExit(1) from None
            import traceback

            traceback.print_exc()
            Console(stderr=True).print("[red]This is an unexpected internal error in rollwise: please report it "
                                       "with the command you ran and the traceback above.[/red]")
            raise SystemExit(1) from None


# help texts are plain text: brackets such as "[quick]" or "[/level]" are not rich markup
app = _App(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False,
           rich_markup_mode=None)
config_app = typer.Typer(no_args_is_help=True, help="Inspect configuration.", rich_markup_mode=None)
app.add_typer(config_app, name="config")
console = Console(stderr=True, soft_wrap=True)  # errors name paths and keys: never wrapped mid-word

OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}


def _load(config: str | None, ctx: typer.Context) -> Any:
    args = list(ctx.args)
    if config is not None and config.startswith("-"):  # no config file: the first token is an override
        config, args = None, [config, *args]
    try:
        return load_config(config, args)
    except ConfigError as exc:
        print_error(exc)
        raise typer.Exit(2) from None


@app.command(context_settings=OVERRIDES)
def train(
    ctx: typer.Context,
    config: Annotated[str | None, typer.Argument(help="TOML config (default: the embedded tiny run)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the run's latest checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="delete the run already in the run directory "
                                            "and start again")] = False,
) -> None:
    """Train with RL. No arguments: the embedded default (warm start + RL on the arithmetic suite).
    Overrides: --section.key=value, e.g. --trainer.steps=50 --sampler.type=vade."""
    cfg = _load(config, ctx)
    from rollwise.progress import ProgressConsole
    from rollwise.train.rundir import RunDir
    from rollwise.train.trainer import Trainer, TrainingInterrupted

    rundir = RunDir(Path(cfg.run.out_dir) / cfg.run.name)
    rundir.acquire()  # before any model is built: a directory in use or holding another run fails now
    trainer = None
    try:
        rundir.check(resume=resume, overwrite=overwrite)
        with ProgressConsole(cfg.trainer.steps, enabled=cfg.trainer.progress, console=console) as progress, \
                CtrlC() as ctrl_c:
            trainer = Trainer(cfg, console=progress.update, rundir=rundir)
            ctrl_c.stop = trainer.request_stop
            try:
                trainer.train(resume=resume, overwrite=overwrite)
            finally:
                trainer.close()
    except TrainingInterrupted as exc:
        print_error(exc)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        print_error("interrupted before training started: no checkpoint written" if trainer is None else
                    f"interrupted during step {trainer.step_index + 1}: not checkpointed; the last checkpoint is "
                    f"{trainer.last_checkpoint()}")
        raise typer.Exit(130) from None
    finally:
        rundir.release()
    _report(trainer.run_dir, plots=cfg.trainer.plots)


class CtrlC:
    """SIGINT during ``rollwise train``: the first asks the trainer to stop once the step in progress finishes
    (it is checkpointed; ``TrainingInterrupted``), a second one, or one before training began, stops at once
    (``KeyboardInterrupt``). Exit code 130 either way, one line. Installed only in the main thread."""

    def __init__(self) -> None:
        self.stop: Any = None  # the trainer's request_stop, once there is a trainer
        self.pressed = 0
        self._old: Any = None

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)

    def _handle(self, signum: int, frame: Any) -> None:
        self.pressed += 1
        if self.stop is None or self.pressed > 1:
            raise KeyboardInterrupt
        self.stop()
        print_error("Ctrl-C: stopping once the step in progress finishes, then checkpointing it (Ctrl-C again "
                    "to stop now, without a checkpoint)")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run directory")],
           plots: bool = typer.Option(True, help="redraw the PNG plots")) -> None:
    """Redraw a run's plots and print its summary table."""
    if not (run_dir / "metrics.jsonl").is_file():
        print_error(f"{run_dir} has no metrics.jsonl")
        raise typer.Exit(2)
    _report(run_dir, plots)


def _report(run_dir: Path, plots: bool) -> None:
    from rollwise.logging import read_metrics
    from rollwise.plots import plot_run, summary_table

    rows = read_metrics(run_dir)
    head, body = summary_table(rows)
    table = Table(title=f"held-out pass@1 — {run_dir}")
    for h in head:
        table.add_column(h)
    for row in body:
        table.add_row(*row)
    last = rows[-1] if rows else {}
    Console().print(table)
    Console().print(f"steps {last.get('step', 0)}  rollouts {last.get('ledger/rollouts', 0)}  "
                    f"tokens {last.get('ledger/tokens', 0)}  train seconds {last.get('ledger/seconds', 0):.0f}")
    if plots:
        for p in plot_run(run_dir):
            Console().print(f"plot: {p}")


app.command()(samplers)
app.command()(recipes)


@config_app.command("show", context_settings=OVERRIDES)
def config_show(
    ctx: typer.Context,
    config: Annotated[str | None, typer.Argument(help="TOML config (default: built-in defaults)")] = None,
    docs: bool = typer.Option(False, "--docs", help="list every option with its default and doc"),
) -> None:
    """Print the resolved config as TOML (after overrides), or every option's doc."""
    if docs:
        for key, default, doc in describe():
            typer.echo(f"{key:38s} {default:24s} {doc}")
        return
    typer.echo(dump_toml(_load(config, ctx)))


app.command()(envs)


@app.command(context_settings=OVERRIDES)
def eval(  # noqa: A001 - the command is called eval
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", help="local HF checkpoint or run checkpoint dir (an [env] "
                                              "config without it: the config's own policy)")] = None,
    data: Annotated[str, typer.Option("--data", help="dataset preset (gsm8k:test), a jsonl/parquet file of "
                                      "prompt/answer[/level] rows, or a procedural suite's held-out split "
                                      "(arith | words)")] = "arith",
    n: Annotated[int, typer.Option("--n", min=1, help="samples per prompt (>= 1)")] = 1,
    out: Annotated[Path | None, typer.Option("--out", help="write results JSON here")] = None,
    config: Annotated[str | None, typer.Option("--config", help="TOML config for template/verifier")] = None,
    allocator: Annotated[str, typer.Option("--allocator", help="uniform | pets | pets_offline: test-time "
                                           "allocation of the n samples (PETS vs uniform maj@k)")] = "uniform",
    budget: Annotated[float | None, typer.Option("--budget", help="PETS mean samples per question "
                                                 "(default n/2)")] = None,
) -> None:
    """Evaluate a checkpoint: pass@1, unbiased pass@k, maj@k, per level/subject; on an [env] config, success,
    turns and tokens per episode of the environment's held-out tasks; JSON with --out."""
    from rollwise.train.evaluate import run_env_eval, run_eval
    from rollwise.train.pets_eval import check_args

    cfg = _load(config, ctx)
    if model is None and cfg.env is None:
        print_error("--model: required (only an [env] config evaluates its own policy without one)")
        raise typer.Exit(2)
    if model is not None and not Path(model).exists():
        print_error(f"--model {model}: no such file or directory")
        raise typer.Exit(2)
    try:
        if cfg.env is not None and (data != "arith" or allocator != "uniform" or budget is not None):
            raise ValueError("an [env] config evaluates on its environment's held-out tasks: drop --data, "
                             "--allocator and --budget")
        if allocator == "uniform" and budget is not None:
            raise ValueError("--budget needs --allocator pets or pets_offline")
        if allocator != "uniform":
            check_args(allocator, budget, n)
    except (KeyError, ValueError) as exc:
        print_error(exc.args[0])
        raise typer.Exit(2) from None
    if cfg.env is not None:
        result = run_env_eval(cfg, model, n)
        data = f"env {cfg.env.type}"
    else:
        result = run_eval(cfg, str(model), data, n, allocator, budget)
    table = Table(title=f"eval {model or 'the config policy'} on {data} (n={n})")
    table.add_column("metric")
    table.add_column("value")
    for k, v in result.items():
        if isinstance(v, float):
            table.add_row(k, f"{v:.4f}")
    Console().print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))


@app.command(context_settings=OVERRIDES)
def swarm(
    ctx: typer.Context,
    config: Annotated[str, typer.Argument(help="TOML config with a [swarm] section")],
    nodes: Annotated[int | None, typer.Option("--nodes", help="nodes (default: the [[swarm.nodes]] tables)")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="delete the nodes' runs and start again")] = False,
) -> None:
    """Train a swarm (SAPO): each node a trainer in a Ray actor, sharing rollouts through the board; a node that
    dies restarts from its checkpoint and rejoins. Without --overwrite, nodes resume their runs."""
    cfg = _load(config, ctx)
    from rollwise.train.swarm_nodes import run_swarm

    try:
        finals = run_swarm(cfg, nodes, overwrite=overwrite)
    except ValueError as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    for k, final in enumerate(finals):
        acc = final.get("eval/mean/pass@1", float("nan"))
        typer.echo(f"node{k}: steps {final.get('steps')}  eval/mean/pass@1 {acc:.3f}")


@app.command(context_settings=OVERRIDES)
def bench(
    ctx: typer.Context,
    grid: Annotated[str, typer.Argument(help="bench grid TOML (e.g. bench/samplers.toml)")],
    report_only: bool = typer.Option(False, "--report-only", help="summarise finished runs, train nothing"),
    quick: bool = typer.Option(False, "--quick", help="the grid's [quick] smoke variant (results in <out>_quick)"),
) -> None:
    """Run a grid of sampler arms x seeds at equal token budget (restartable) and write the results table."""
    from rollwise.bench import check_grid, load_grid, quick_grid, run_grid, summarise, write_report

    try:
        g = load_grid(grid)
        if quick:
            g = quick_grid(g)
        if not report_only:
            check_grid(g, list(ctx.args))  # every arm's config, before the first trains
    except ConfigError as exc:
        print_error(exc)
        raise typer.Exit(2) from None
    if not report_only:
        run_grid(g, list(ctx.args), log=console.log)
    md = write_report(g, summarise(g))
    Console().print(md.read_text())
    if g.headline:
        from rollwise.bench_headline import headline, write_headline

        Console().print(write_headline(g, headline(g)).read_text())


model_app = typer.Typer(no_args_is_help=True, help="Bring pretrained models into rollwise.", rich_markup_mode=None)
app.add_typer(model_app, name="model")


@model_app.command("import")
def model_import(
    gguf_file: Annotated[Path, typer.Argument(help="the .gguf model file")],
    out_dir: Annotated[Path, typer.Argument(help="directory to write the Hugging Face model into")],
    dtype: Annotated[str, typer.Option("--dtype", help="float32 | bfloat16 | float16: dtype the weights are "
                                       "de-quantized to and saved in")] = "float32",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="write into a non-empty OUT_DIR")] = False,
) -> None:
    """GGUF file -> plain HF directory (de-quantized weights, tokenizer, chat template) for --model."""
    from rollwise.train.gguf import import_gguf

    result = import_gguf(gguf_file, out_dir, dtype=dtype, overwrite=overwrite)
    Console().print(f"imported {result.model_type} with {result.num_parameters:,} parameters ({result.dtype}) "
                    f"to {result.path}", highlight=False)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
