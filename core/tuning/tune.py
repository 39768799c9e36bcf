"""`tl tune PLUGIN`: an Optuna study whose trials are ordinary `tl run` directories.

The flags given to `tl tune` are fixed for every trial (a flag also takes its option out of
the search space); ``--config FILE`` gives base values the space may override. Each process
adds ``--trials`` trials to the study (rerun: the study continues; several processes or
machines on one storage share it). SIGINT/SIGTERM stop between batches: the running trial is
recorded as failed (its run directory ``interrupted``), its parameters are queued to run
first next time, the report is written and `tl tune` exits 130/143; a rerun continues.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Interrupted
from ..fileio import write_text_atomic
from ..interrupts import handling_stop_signals
from ..progress import ProgressReporter
from ..run_config import resolve_run_config
from ..tracking import flat_metrics, study_run
from .objective import Objective, TuneStopped
from .report import trials_frame, write_study_report
from .space import SearchSpace, parse_space, read_space
from .study import StudySettings, check_study_name, default_study_name, metric_direction, open_study

DEFAULT_TRIALS = 20


@dataclass(frozen=True)
class TuneOptions:
    """`tl tune`'s own options (the rest are `tl run`'s)."""

    trials: int | None = None
    timeout: float | None = None
    metric: str | None = None
    direction: str | None = None
    study: str | None = None
    storage: str | None = None
    space: Path | None = None
    pruner: str = "median"
    startup_trials: int = 5
    sampler_seed: int | None = None
    verbose: bool = False


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError("tl tune needs Optuna, which is not installed", "tl tune",
                          'pip install "tl[train]" (or pip install optuna)') from None  # fmt: skip
    return optuna


def search_space(
    plugin: Any, base: Any, tune: TuneOptions, flags: Mapping[str, Any]
) -> SearchSpace:
    """``--space`` or the plugin's default, less the options fixed by flags."""
    if tune.space is not None:
        space = read_space(plugin, tune.space)
    else:
        space = parse_space(plugin, plugin.search_space(base), f"{plugin.name}'s default space")
    given = {k for k, v in flags.items() if v is not None and v != () and k != "config"}
    space = space.without(given)
    if not space.params:
        raise ConfigError("nothing to search: flags fix every parameter of the space",
                          str(tune.space or "the default space"),
                          "drop some flags, or pass --space with other parameters")  # fmt: skip
    return space


def tune_plugin(
    plugin: Any,
    flags: Mapping[str, Any],
    tune: TuneOptions,
    reporter: ProgressReporter | None = None,
) -> Path:
    """The whole `tl tune`; returns ``OUT/tune-<study>``."""
    optuna = require_optuna()
    flags = {k: v for k, v in flags.items() if k not in ("resume", "devices", "verbose")}
    base = resolve_run_config(plugin, flags)
    metric = (tune.metric or plugin.monitor).removeprefix("val_")
    name = check_study_name(tune.study or default_study_name(plugin.name, base["data"]))
    space = search_space(plugin, base, tune, flags)
    settings = StudySettings(
        name=name,
        out_dir=Path(base["out"]) / f"tune-{name}",
        storage=tune.storage,
        metric=metric,
        direction=metric_direction(metric, plugin, tune.direction),
        pruner=tune.pruner,
        startup_trials=tune.startup_trials,
        sampler_seed=tune.sampler_seed,
        max_epochs=int(base["epochs"]),
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING if tune.verbose else optuna.logging.ERROR)
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    reporter = reporter or ProgressReporter()
    reporter.log_file = settings.out_dir / "tune.log"
    study, storage = open_study(settings, plugin, str(base["data"]))
    if not study.trials:  # a new study: trial 0 is the plain `tl run` (see SearchSpace.baseline)
        study.enqueue_trial(space.baseline(base), user_attrs={"tl_default_run": True})
    reporter.log(
        f"study {name} ({storage}): {len(study.trials)} trials so far; {settings.direction} "
        f"val {metric}; searching " + "; ".join(f"{p.name} {p.describe()}" for p in space.params)
    )
    objective = Objective(plugin, flags, base, space, settings.out_dir, metric, reporter)
    n_trials = (
        tune.trials if tune.trials is not None else (None if tune.timeout else DEFAULT_TRIALS)
    )
    params = {"plugin": plugin.name, "study": name, "metric": metric, "storage": storage,
              "direction": settings.direction, "space": space.as_dict(),
              **{f"fixed.{k}": v for k, v in flags.items() if v is not None and v != ()}}  # fmt: skip
    tracking = base["track"] == "mlflow"
    with study_run(name, settings.out_dir, {"plugin": plugin.name}, params, tracking) as tracker:
        stopped: BaseException | None = None
        with _stop_signals(objective):
            try:
                after = _after_trial(objective, settings.out_dir)
                study.optimize(objective, n_trials=n_trials, timeout=tune.timeout,
                               catch=(Exception,), callbacks=[after])  # fmt: skip
            except KeyboardInterrupt as exc:  # TuneStopped, or a second Ctrl-C
                stopped = exc
        if stopped is None and objective.signum is not None:  # came between two trials
            stopped = TuneStopped(objective.signum)
        summary = write_study_report(study, settings, plugin, space, storage)
        if tracker is not None:
            tracker.log_metrics(flat_metrics(summary))
        if stopped is not None:
            raise _interrupted(study, stopped, settings.out_dir, objective.interrupted)
        if objective.fatal is not None:
            raise objective.fatal
    reporter.log(_summary_line(summary))
    return settings.out_dir


def _summary_line(summary: Mapping[str, Any]) -> str:
    metric = summary["metric"]
    counts = ", ".join(f"{summary.get(f'n_{s}', 0)} {w}" for s, w in
                       (("complete", "complete"), ("pruned", "pruned"), ("fail", "failed")))  # fmt: skip
    if "best_trial" not in summary:
        return f"study {summary['study']}: {summary['trials']} trials ({counts}); none complete"
    return (
        f"study {summary['study']}: {summary['trials']} trials ({counts}); best trial "
        f"{summary['best_trial']}: val {metric} {summary[f'best_val_{metric}']:.4f}"
    )


def _interrupted(study: Any, exc: BaseException, out_dir: Path, number: int | None) -> Interrupted:
    """Queue the parameters of trial ``number`` (the one the signal ended) to run first next
    time; the error to exit with."""
    signum = getattr(exc, "signum", signal.SIGINT)
    what = f"interrupted by {signal.Signals(signum).name}"
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is not None and trial.params:
        study.enqueue_trial(trial.params, user_attrs={"retry_of": number})
        what += f"; trial {number} is recorded as failed and its parameters are queued"
    return Interrupted(
        signum, what, out_dir, "rerun the same `tl tune` command to continue the study"
    )


def _after_trial(objective: Objective, out_dir: Path) -> Any:
    """After each trial: trials.csv brought up to date (a long study can be followed), and
    the study stopped if a signal came meanwhile."""

    def callback(study: Any, trial: Any) -> None:
        frame = trials_frame(study.get_trials(deepcopy=False), objective.metric)
        write_text_atomic(out_dir / "trials.csv", frame.to_csv(index=False))
        if objective.signum is not None:
            study.stop()

    return callback


@contextmanager
def _stop_signals(objective: Objective) -> Iterator[None]:
    """SIGINT/SIGTERM while no trial trains (the trainer handles its own): inside a trial
    (loading, export) stop it now; between trials stop before the next one."""

    def handle(signum: int, frame: Any) -> None:
        if objective.running is not None:
            raise TuneStopped(signum, f"stopped by {signal.Signals(signum).name}")
        objective.signum = signum

    with handling_stop_signals(handle):
        yield


__all__ = ["TuneOptions", "search_space", "tune_plugin"]
