"""The trainer callback that feeds a trial's per-epoch validation metric to Optuna's pruner.

After every epoch's validation the monitored value is reported to the trial (step = epoch);
after the epoch's checkpoints are written, a trial the pruner gives up on raises `Pruned`:
training stops there, the run directory keeps its checkpoints and log, and the objective
marks its manifest ``status: pruned`` (no evaluation, export or report is spent on it).
"""

from __future__ import annotations

import math
from typing import Any

import optuna

from ..callbacks import Callback, FitState
from ..errors import ConfigError


class Pruned(optuna.TrialPruned):
    """The pruner stopped this trial after ``epoch`` (1-based) at validation ``value``."""

    #: read by `tl.core.tracking` (the MLflow run ends KILLED, tagged tl.status=pruned)
    tl_status = "pruned"

    def __init__(self, epoch: int, metric: str, value: float) -> None:
        self.epoch, self.metric, self.value = epoch, metric, value
        super().__init__(f"pruned after epoch {epoch} (val {metric} {value:.4g})")


class MetricMissing(ConfigError):
    """``--metric`` is not among the validation metrics: no trial of the study can work."""


class PruningCallback(Callback):
    """Reports ``val_<metric>`` per epoch to ``trial`` and prunes when it says so; keeps the
    epochs' history rows (a pruned run writes no history.csv of its own)."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric = trial, metric
        self.rows: list[dict[str, Any]] = []
        self.value = math.nan
        #: SIGINT/SIGTERM that reached the trainer but did not stop it (it came after the
        #: last batch, or the trial was pruned first): `tl tune` stops after this trial
        self.stop_signal: int | None = None

    def on_validation_end(self, trainer: Any, state: FitState) -> None:
        if self.metric not in state.val_metrics:
            shown = ", ".join(sorted(k for k in state.val_metrics if not k.startswith("_")))
            raise MetricMissing(f"'{self.metric}' is not a validation metric", "--metric",
                                f"use one of: {shown}")  # fmt: skip
        self.value = float(state.val_metrics[self.metric])
        self.rows.append(dict(state.row))
        self.trial.report(self.value, step=state.epoch + 1)

    def on_epoch_end(self, trainer: Any, state: FitState) -> None:
        last = state.epoch + 1 >= trainer.config.epochs or state.result.stopped_early
        if not last and self.trial.should_prune():
            trainer.reporter.log(
                f"pruned: val {self.metric} {self.value:.4g} after epoch {state.epoch + 1} "
                "is worse than the pruner accepts"
            )
            raise Pruned(state.epoch + 1, self.metric, self.value)

    def teardown(self, trainer: Any, state: FitState) -> None:
        self.stop_signal = trainer.stop_signal


__all__ = ["MetricMissing", "Pruned", "PruningCallback"]
