"""One `tl tune` trial = one ordinary `tl run` in ``OUT/tune-<study>/trial-<n>/``.

The trial samples its values from the search space, checks them with the options' own types
(an invalid value fails this trial only), and calls `tl.core.run.run_plugin` with the
tune's fixed flags plus those values and a `PruningCallback`. Its config.yaml is therefore
a complete `tl run --config` file that reproduces it. The objective's value is the
validation metric at the run's best epoch (the weights it keeps and exports); the test
metric is recorded beside it, never optimised.
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from ..errors import Interrupted, TLError
from ..fileio import write_text_atomic
from ..progress import ProgressReporter
from ..rundir import update_manifest
from .pruning import MetricMissing, Pruned, PruningCallback
from .space import SearchSpace, checked_values


def _trial_options(flags: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's `tl run` options: no from-scratch twin unless the flags ask for one (the
    study compares configurations, not transfer against scratch)."""
    options = {**flags, **values}
    if options.get("compare_scratch") is None:
        options["compare_scratch"] = False
    return options


class TuneStopped(KeyboardInterrupt):
    """SIGINT/SIGTERM during `tl tune`: Optuna records the running trial as failed and lets
    this through (it is no ``Exception``), so the study stops between trials."""

    def __init__(self, signum: int, message: str = "") -> None:
        super().__init__(message)
        self.signum, self.message = signum, message


class TrialReporter(ProgressReporter):
    """The tune's log lines, each prefixed with the trial (``trial 3: epoch 1/2 …``)."""

    def __init__(self, parent: ProgressReporter, number: int) -> None:
        super().__init__(enabled=parent.enabled, stream=parent.stream)
        self.prefix = f"trial {number}: "

    def log(self, message: str) -> None:
        super().log(self.prefix + message)


class Objective:
    """The function Optuna calls per trial (see the module docstring)."""

    def __init__(
        self,
        plugin: Any,
        flags: Mapping[str, Any],
        base: Mapping[str, Any],
        space: SearchSpace,
        out_dir: Path,
        metric: str,
        reporter: ProgressReporter,
    ) -> None:
        self.plugin, self.flags, self.base, self.space = plugin, dict(flags), base, space
        self.out_dir, self.metric, self.reporter = Path(out_dir), metric, reporter
        self.signum: int | None = None  # a stop signal that came between trials
        self.running: int | None = None  # the trial number in progress
        self.fatal: TLError | None = None  # an error no trial of this study can get past
        self.interrupted: int | None = None  # the trial a stop signal ended

    def __call__(self, trial: optuna.Trial) -> float:
        from ..run import run_plugin

        if self.signum is not None:
            raise TuneStopped(self.signum, "stopped before the trial started")
        number, self.running = trial.number, trial.number
        trial.set_user_attr("host", socket.gethostname())
        started = time.time()
        try:
            values = checked_values(self.plugin, self.space.sample(trial, self.base))
            self.reporter.log(f"trial {number}: " + _describe(values))
            run_dir = self.trial_dir(number)
            trial.set_user_attr("run_dir", str(run_dir.resolve()))
            pruner = PruningCallback(trial, self.metric)
            reporter = TrialReporter(self.reporter, number)
            try:
                run_plugin(self.plugin, _trial_options(self.flags, values), reporter,
                           callbacks=[pruner], run_dir=run_dir)  # fmt: skip
            except Pruned as exc:
                self.signum = self.signum or pruner.stop_signal
                _mark_pruned(self.plugin, run_dir, exc, pruner.rows)
                trial.set_user_attr("epochs_run", exc.epoch)
                self.reporter.log(f"trial {number} pruned after epoch {exc.epoch} "
                                  f"(val {self.metric} {exc.value:.4g})")  # fmt: skip
                raise
            self.signum = self.signum or pruner.stop_signal
            return self._value(trial, run_dir)
        except Interrupted as exc:
            trial.set_user_attr("error", exc.line())
            self.interrupted = number
            raise TuneStopped(exc.exit_code - 128, exc.line()) from exc  # 128 + signal
        except KeyboardInterrupt:
            trial.set_user_attr("error", "interrupted")
            self.interrupted = number
            raise
        except MetricMissing as exc:
            self.fatal = exc
            trial.study.stop()
            trial.set_user_attr("error", exc.line())
            raise
        except TLError as exc:
            trial.set_user_attr("error", exc.line())
            self.reporter.log(f"trial {number} failed: {exc.line()}")
            raise
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            line = f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            trial.set_user_attr("error", line)
            self.reporter.log(f"trial {number} failed: {line}")
            raise
        finally:
            trial.set_user_attr("seconds", round(time.time() - started, 2))
            self.running = None

    def trial_dir(self, number: int) -> Path:
        """``trial-<n>``; ``trial-<n>-2`` … when a folder of that name is left from a study
        of the same name whose storage was deleted."""
        for attempt in range(1, 1000):
            name = f"trial-{number}" + (f"-{attempt}" if attempt > 1 else "")
            if not (self.out_dir / name).exists():
                return self.out_dir / name
        raise TLError("too many folders for one trial", self.out_dir, "use another --study")

    def _value(self, trial: optuna.Trial, run_dir: Path) -> float:
        """The validation metric at the best epoch; the test metric as a user attribute."""
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        history = pd.read_csv(run_dir / "history.csv")
        column = f"val_{self.metric}"
        best = int(metrics.get("best_epoch") or 0)
        trial.set_user_attr("epochs_run", int(metrics.get("epochs_run") or len(history)))
        test = metrics.get(self.metric)
        if isinstance(test, (int, float)) and not isinstance(test, bool):
            trial.set_user_attr("test_value", float(test))
        if column not in history.columns or best < 1 or best > len(history):
            raise TLError(
                f"the run has no validation {self.metric} at a best epoch", run_dir,
                "tune a strategy that trains in epochs (not prototypes)")  # fmt: skip
        value = float(history[column].iloc[best - 1])
        shown = f"{test:.4f}" if isinstance(test, float) else "n/a"
        self.reporter.log(f"trial {trial.number} complete: val {self.metric} {value:.4f} at "
                          f"epoch {best}, test {shown}")  # fmt: skip
        if not math.isfinite(value):
            raise TLError(f"validation {self.metric} is {value}", run_dir, "check the run's log")
        return value


def _describe(values: Mapping[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


def _mark_pruned(plugin: Any, run_dir: Path, exc: Pruned, rows: list[dict[str, Any]]) -> None:
    """The pruned run's manifest says so (``status: pruned``, not failed, not complete) and
    its history.csv holds the epochs it ran."""
    if rows:
        write_text_atomic(run_dir / "history.csv", pd.DataFrame(rows).to_csv(index=False))
    update_manifest(run_dir, plugin, {}, {
        "status": "pruned",
        "error": None,
        "pruned": {"epoch": exc.epoch, "metric": exc.metric, "value": exc.value},
    })  # fmt: skip


__all__ = ["Objective", "TrialReporter", "TuneStopped"]
