"""What happens around the trainer's loop, one concern per callback.

`tl.core.trainer.Trainer.fit` calls, for every callback in order, the hooks it has (any
object with some of these methods is a callback; `Callback` is a base with no-ops):

* ``on_fit_start``       after the optimizer exists, before the first epoch (resume here);
* ``on_epoch_start``     after the epoch's reseed and trainable set (swap the epoch's data);
* ``on_train_epoch_end`` after the training pass, before validation;
* ``on_validation_end``  the epoch's ``row`` and ``val_metrics`` are known (judge, record);
* ``on_epoch_end``       after the epoch's log line (persist);
* ``on_fit_end``         after the last epoch, on success only;
* ``teardown``           always, also when training fails or is interrupted.

Each gets ``(trainer, state)``: the `tl.core.trainer.Trainer` and the fit's mutable
`FitState`. The
built-in callbacks (`default_callbacks`, in this order): the feature cache, precise
BatchNorm, checkpoints (best/last, ``--resume``), early stopping and TensorBoard.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import distributed as dist
from .feature_cache import FeatureCache, HeadOnly, collate_batch, parse_mode, wants_cache
from .seeding import seed_everything
from .snapshots import ModelSnapshots

HOOKS = (
    "on_fit_start",
    "on_epoch_start",
    "on_train_epoch_end",
    "on_validation_end",
    "on_epoch_end",
    "on_fit_end",
    "teardown",
)


@dataclass
class FitResult:
    """What `Trainer.fit` returns: the history rows and the best (1-based) epoch."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float | None = None
    stopped_early: bool = False
    seconds: float = 0.0


@dataclass
class FitState:
    """One `Trainer.fit` call: what it trains, how far it is, and this epoch's values.

    ``epoch`` is 0-based; ``epoch_model``/``epoch_train``/``epoch_val``/``epoch_collate``
    are what this epoch trains and validates on — the model and data, unless a callback
    swapped them (`FeatureCaching`: the head on cached features)."""

    model: nn.Module
    plan: Any
    train: Any
    val: Any
    collate: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    steps_per_epoch: int
    result: FitResult = field(default_factory=FitResult)
    resume: bool = False
    callbacks: Sequence[Any] = ()
    start_epoch: int = 0
    bad_epochs: int = 0
    epoch: int = 0
    epoch_started: float = 0.0
    epoch_model: Any = None
    epoch_train: Any = None
    epoch_val: Any = None
    epoch_collate: Any = None
    train_loss: float = math.nan
    val_metrics: dict[str, Any] = field(default_factory=dict)
    row: dict[str, Any] = field(default_factory=dict)
    improved: bool = False
    #: the epoch's last N training batches average the BN statistics (`PreciseBatchNorm`)
    bn_average_batches: int = 0

    def progress(self) -> dict[str, Any]:
        """What a checkpoint records after this epoch (its ``{tag}.json``)."""
        result = self.result
        return {
            "epoch": self.epoch + 1,
            "bad_epochs": self.bad_epochs,
            "best_epoch": result.best_epoch,
            "best_score": result.best_score,
            "stopped_early": result.stopped_early,
            "seconds": result.seconds,
            "history": result.history,
        }


class Callback:
    """A callback with every hook a no-op; subclass it and override what you need."""

    def on_fit_start(self, trainer: Any, state: FitState) -> None: ...
    def on_epoch_start(self, trainer: Any, state: FitState) -> None: ...
    def on_train_epoch_end(self, trainer: Any, state: FitState) -> None: ...
    def on_validation_end(self, trainer: Any, state: FitState) -> None: ...
    def on_epoch_end(self, trainer: Any, state: FitState) -> None: ...
    def on_fit_end(self, trainer: Any, state: FitState) -> None: ...
    def teardown(self, trainer: Any, state: FitState) -> None: ...


def call_hook(hook: str, trainer: Any, state: FitState) -> None:
    """``hook`` of every callback of ``state`` that has it, in order."""
    for callback in state.callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(trainer, state)


class FeatureCaching(Callback):
    """While the backbone is frozen, the epoch trains `HeadOnly` on features computed once
    (`tl.core.feature_cache`); the cache is dropped when the backbone starts to train."""

    def on_fit_start(self, trainer: Any, state: FitState) -> None:
        self.mode = parse_mode(trainer.config.cache_features)
        self.cache = FeatureCache(trainer.run_dir)

    def on_epoch_start(self, trainer: Any, state: FitState) -> None:
        cache, model = self.cache, state.model
        if not cache.failed and wants_cache(self.mode, model):
            if not cache.splits and cache.build(
                trainer, model, state.train, state.val, state.collate
            ):
                trainer.reporter.log(
                    f"cached backbone features of {len(state.train)} train and {len(state.val)} "
                    f"val items in {time.time() - state.epoch_started:.1f}s"
                )
                seed_everything(trainer.config.seed * 1000 + state.epoch)
            if cache.splits:
                state.epoch_model, state.epoch_collate = HeadOnly(model), collate_batch
                state.epoch_train, state.epoch_val = cache.splits["train"], cache.splits["val"]
        elif cache.splits:
            cache.close()

    def teardown(self, trainer: Any, state: FitState) -> None:
        self.cache.close()


class PreciseBatchNorm(Callback):
    """BatchNorm running statistics as a true average of the epoch's last training batches
    ("precise BN"), at no extra cost: for its last ``precise_bn_batches`` batches the
    trainer resets the running statistics of the trainable BN layers and lets them
    accumulate an equal-weight average (`BatchNormAverage`) instead of the exponential one.

    Early in training the exponential running averages lag far behind weights that move
    fast (and still hold their initial values), so a short run from scratch validates much
    worse in eval mode than it trains. Past ``precise_bn_below_steps`` optimizer steps the
    lag is negligible and this is skipped."""

    def on_epoch_start(self, trainer: Any, state: FitState) -> None:
        config = trainer.config
        state.bn_average_batches = (
            config.precise_bn_batches
            if (state.epoch + 1) * state.steps_per_epoch < config.precise_bn_below_steps
            else 0
        )


class BatchNormAverage:
    """From `begin` on, the training-mode BN layers of a model replace their running
    statistics by the plain average over the batches they see (``momentum=None``); leaving
    the ``with`` block restores their momentum."""

    def __init__(self, model: nn.Module) -> None:
        self.norms = [
            m
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.training
            and m.track_running_stats
        ]
        self.momenta = [m.momentum for m in self.norms]

    def begin(self) -> BatchNormAverage:
        for m in self.norms:
            m.reset_running_stats()
            m.momentum = None
        return self

    def __enter__(self) -> BatchNormAverage:
        return self

    def __exit__(self, *exc: Any) -> None:
        for m, momentum in zip(self.norms, self.momenta, strict=True):
            m.momentum = momentum


class Checkpointing(Callback):
    """``checkpoints/best.*`` when the epoch improved and ``last.*`` (with the optimizer,
    scheduler and scaler state) after every epoch, on rank 0 — best first, so that a kill
    between the two leaves ``last`` an epoch behind, never ahead of ``best``; ``--resume`` continues from
    ``last``; the best epoch's weights are loaded back when training ends. The final epoch's
    ``last`` has no optimizer state (a resumed run that ended trains no further, and for
    AdamW it is twice the weights, written while nothing else runs). What a checkpoint
    holds is the strategy's choice (`StrategyPlan.checkpoint_state`; lora: merged weights).
    The files are written behind the next epoch's training (`CheckpointStore.save` with
    ``background``; an epoch's two as one job, coalesced with the next epoch's while it
    waits), at most every ``checkpoint_every`` seconds (on short epochs the files cost
    more than the epochs: ~3x the weights serialised on a core the loop needs);
    ``teardown`` and the stop on SIGTERM / Ctrl-C write the newest at once."""

    def on_fit_start(self, trainer: Any, state: FitState) -> None:
        self.model_epoch: int | None = None  # the epoch whose end the model is at, if any
        self.best_weights: dict[str, torch.Tensor] | None = None  # this fit's best, a copy
        self.snapshots = ModelSnapshots()
        store = trainer.store
        store.write_every(trainer.config.checkpoint_every)
        if not (state.resume and store.exists("last")):
            return
        progress = store.progress("last")
        store.load_model("last", state.model, state.plan.load_checkpoint_state)
        saved = store.training_state("last")
        if saved is not None:
            state.optimizer.load_state_dict(saved["optimizer"])
            state.scheduler.load_state_dict(saved["scheduler"])
            if saved.get("scaler"):
                trainer.scaler.load_state_dict(saved["scaler"])
        result = state.result
        result.history = list(progress["history"])
        result.best_epoch = progress["best_epoch"]
        result.best_score = progress["best_score"]
        result.stopped_early = progress["stopped_early"]
        result.seconds = progress.get("seconds", 0.0)
        state.start_epoch, state.bad_epochs = int(progress["epoch"]), int(progress["bad_epochs"])
        trainer.reporter.log(
            f"resumed after epoch {state.start_epoch} (best epoch {result.best_epoch})"
        )

    def on_epoch_end(self, trainer: Any, state: FitState) -> None:
        self.model_epoch = state.epoch + 1
        if not dist.is_main():
            return
        progress = state.progress()
        weights = self.snapshots.take(
            state.plan.checkpoint_state(state.model), state.model, state.epoch_model
        )
        training_state = None  # nothing resumes from the final epoch
        if state.epoch + 1 < trainer.config.epochs and not state.result.stopped_early:
            training_state = {
                "optimizer": state.optimizer.state_dict(),
                "scheduler": state.scheduler.state_dict(),
                "scaler": trainer.scaler.state_dict(),
            }
        with trainer.store.together():
            if state.improved:
                self.best_weights = weights
                trainer.save_checkpoint("best", state.model, progress, weights, background=True)
            trainer.save_checkpoint(
                "last", state.model, progress, weights, training_state=training_state,
                weights_from="best" if state.improved else None, background=True,
            )  # fmt: skip

    def teardown(self, trainer: Any, state: FitState) -> None:
        self.snapshots.clear()
        trainer.store.close()

    def on_fit_end(self, trainer: Any, state: FitState) -> None:
        """The best epoch's weights back into the model: nothing to do when it ended at that
        epoch, else from the copy this fit kept (reading the file back cost 8 % of a 16-step
        resnet18 fit), else (other ranks, a resumed fit) from ``best.safetensors``."""
        best = state.result.best_epoch
        if self.model_epoch is not None and self.model_epoch == best:
            return
        if self.best_weights is not None:
            missing, unexpected = state.plan.load_checkpoint_state(state.model, self.best_weights)
            if not (missing or unexpected):
                return
        if trainer.store.exists("best"):
            trainer.store.load_model("best", state.model, state.plan.load_checkpoint_state)


def improved(score: float, best: float | None, mode: str) -> bool:
    """Whether ``score`` beats ``best`` (``mode`` "max" or "min"); NaN never improves."""
    if best is None or math.isnan(best):
        return not math.isnan(score)
    return score > best if mode == "max" else score < best


def _tied(score: float, best: float | None) -> bool:
    return best is not None and math.isclose(score, best, rel_tol=1e-9, abs_tol=1e-12)


def _lower_loss(state: FitState) -> bool:
    """Whether this epoch's validation loss is below the best epoch's (both known)."""
    loss = state.val_metrics.get("loss")
    best = next((r for r in state.result.history if r.get("epoch") == state.result.best_epoch), {})
    best_loss = best.get("val_loss")
    return loss is not None and best_loss is not None and float(loss) < float(best_loss)


class EarlyStopping(Callback):
    """Follows the task's monitored validation metric: sets ``state.improved`` (the best
    checkpoint follows it) and stops after ``patience`` epochs without improvement
    (``patience`` 0: never). A tie on the metric goes to the lower validation loss: on a
    small validation split the metric saturates (AUROC 1.0 on 15 images from the first
    epoch on), and the first epoch to reach it would otherwise stay the best for good."""

    def on_validation_end(self, trainer: Any, state: FitState) -> None:
        result, task = state.result, trainer.task
        score = float(state.val_metrics.get(task.monitor, float("nan")))
        state.improved = improved(score, result.best_score, task.monitor_mode) or (
            _tied(score, result.best_score) and _lower_loss(state)
        )
        if state.improved:
            result.best_score, result.best_epoch, state.bad_epochs = score, state.epoch + 1, 0
        else:
            state.bad_epochs += 1
        patience = trainer.config.patience
        waited = state.epoch + 1 >= getattr(state.plan, "min_epochs", 0)
        if patience and state.bad_epochs >= patience and waited:
            result.stopped_early = True

    def on_epoch_end(self, trainer: Any, state: FitState) -> None:
        if state.result.stopped_early:
            trainer.reporter.log(
                f"early stop: no improvement of {trainer.task.monitor} "
                f"for {state.bad_epochs} epochs"
            )


class TensorBoard(Callback):
    """The epoch's scalar columns under ``run_dir/tb`` (``val_x`` as ``val/x``), on rank 0
    unless the trainer was made with ``tensorboard=False``."""

    writer: Any = None

    def on_fit_start(self, trainer: Any, state: FitState) -> None:
        if trainer.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(trainer.run_dir / "tb"))

    def on_validation_end(self, trainer: Any, state: FitState) -> None:
        if self.writer is None:
            return
        row = state.row
        for key, value in row.items():
            if key != "epoch" and is_scalar(value):
                tag = key.replace("val_", "val/").replace("train_", "train/")
                self.writer.add_scalar(tag, value, row["epoch"])
        self.writer.flush()

    def teardown(self, trainer: Any, state: FitState) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def default_callbacks() -> list[Callback]:
    """Fresh built-in callbacks for one fit, in the order their hooks must run."""
    return [FeatureCaching(), PreciseBatchNorm(), Checkpointing(), EarlyStopping(), TensorBoard()]


__all__ = [
    "HOOKS",
    "Callback",
    "Checkpointing",
    "EarlyStopping",
    "FeatureCaching",
    "FitResult",
    "FitState",
    "BatchNormAverage",
    "PreciseBatchNorm",
    "TensorBoard",
    "call_hook",
    "default_callbacks",
]
