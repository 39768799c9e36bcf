"""The training loop shared by every plugin: fit → train epoch / validation epoch.

The loop runs a `tl.core.task.Task` (or any object with its attributes: ``training_step``,
``predict_step``, ``metrics``, ``monitor``, ``monitor_mode``), so a classifier, a tabular
model, a sequence recommender and a detector all go through the same code: device
placement, AMP, gradient accumulation, a cosine schedule with warmup and history. What
happens around the loop — checkpoints and ``--resume``, early stopping, TensorBoard, the
feature cache, precise BatchNorm — are callbacks (`tl.core.callbacks`).

Reproducibility: every epoch reseeds all RNGs from ``seed + epoch`` and its shuffling comes
from a generator with the same seed (`tl.core.loaders`). An epoch therefore depends only on
the state saved at the end of the previous one, and ``--resume`` after a kill ends where an
uninterrupted run ends (bit for bit on CPU).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from . import distributed as dist
from .allocator import reuse_freed_memory
from .callbacks import (
    BatchNormAverage,
    FitResult,
    FitState,
    call_hook,
    default_callbacks,
    is_scalar,
)
from .checkpoints import CheckpointStore
from .devices import amp_dtype, autocast, channels_last, resolve_device, to_cpu, to_device
from .errors import ConfigError, DataError
from .interrupts import StopSignals
from .loaders import EpochBatchSampler, LoaderCache
from .optim import build_optimizer, cosine_with_warmup
from .progress import ProgressReporter, Throughput
from .seeding import seed_everything
from .strategies.base import StrategyPlan, parameter_counts
from .task import as_task


@dataclass
class TrainConfig:
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    momentum: float = 0.9
    warmup: float = 0.1
    batch_size: int = 32
    grad_accum: int = 1
    patience: int = 5
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    max_grad_norm: float | None = None
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    precise_bn_below_steps: int = 500
    precise_bn_batches: int = 4
    cache_features: str = "auto"
    #: seconds of training between checkpoint writes (0: every epoch; the final one always)
    checkpoint_every: float = 60.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Trainer:
    """Trains ``model`` on a task; writes checkpoints, history and TensorBoard into ``run_dir``.

    ``callbacks`` run after the built-in ones (`tl.core.callbacks.default_callbacks`)."""

    def __init__(
        self,
        config: TrainConfig,
        task: Any,
        run_dir: Path,
        reporter: ProgressReporter | None = None,
        weights_meta: Callable[[], dict[str, Any]] | None = None,
        tensorboard: bool = True,
        callbacks: Sequence[Any] = (),
    ) -> None:
        self.config = config
        self.task = as_task(task)
        self.run_dir = Path(run_dir)
        self.reporter = reporter or ProgressReporter()
        self._star_explained = False
        self.weights_meta = weights_meta or dict
        self.callbacks = list(callbacks)
        self.store = CheckpointStore(self.run_dir)
        self.device = dist.device_for(resolve_device(config.device))
        self.tensorboard = tensorboard and dist.is_main()
        if not dist.is_main():
            self.reporter = ProgressReporter(enabled=False)
        self.loaders = LoaderCache(config, pin_memory=self.device.type == "cuda")
        self._wrapped: tuple[Any, nn.Module] | None = None
        self._stop = StopSignals()
        self.amp_dtype = amp_dtype(self.device, config.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    # ------------------------------------------------------------ placement
    @property
    def stop_signal(self) -> int | None:
        """The SIGINT/SIGTERM that asked the running (or last) `fit` to stop, if one came;
        callbacks read it in ``teardown`` (e.g. `tl tune` stops the study on it)."""
        return self._stop.signum

    def loader(
        self,
        dataset: Any,
        collate: Any,
        shuffle: bool,
        epoch: int = 0,
        distributed: bool = False,
        keep: bool = True,
        batch_size: int | None = None,
    ) -> DataLoader:
        """A loader whose order depends only on ``(seed, epoch)``; kept across epochs so
        that worker processes persist. ``distributed``: this rank's share of every global
        batch (`DistributedSampler`, same permutation as a single process). ``keep=False``
        for a one-off pass: no persistent workers, not remembered."""
        return self.loaders.get(dataset, collate, shuffle, epoch, distributed, keep, batch_size)

    def to_device(self, batch: Any) -> Any:
        """``batch`` on the device (non-blocking from pinned memory); on CUDA image batches
        go channels_last like the model."""
        batch = to_device(batch, self.device)
        if self.device.type == "cuda" and self.config.channels_last:
            batch = channels_last(batch)
        return batch

    def autocast(self) -> Any:
        """The training/inference autocast context (a no-op on CPU or without ``amp``)."""
        return autocast(self.device, self.amp_dtype)

    def prepare(self, model: nn.Module) -> nn.Module:
        model.to(self.device)
        if self.device.type == "cuda" and self.config.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    # -------------------------------------------------------------------- fit
    def fit(
        self,
        model: nn.Module,
        plan: StrategyPlan,
        train: Any,
        val: Any,
        collate: Any = None,
        resume: bool = False,
    ) -> FitResult:
        """Train ``model`` as ``plan`` says for ``config.epochs`` (fewer when early stopping
        ends it); returns with the best epoch's weights loaded into ``model``."""
        if len(train) == 0:
            raise DataError("the training split is empty", "train", "add data or change the split")
        state = self._fit_state(self.prepare(model), plan, train, val, collate, resume)
        call_hook("on_fit_start", self, state)
        started = time.time() - state.result.seconds
        try:
            with self._stop, reuse_freed_memory(self.device.type == "cpu"):
                for epoch in range(state.start_epoch, self.config.epochs):
                    if state.result.stopped_early:
                        break
                    self._begin_epoch(state, epoch)
                    call_hook("on_epoch_start", self, state)
                    state.train_loss = self._train_epoch(state)
                    call_hook("on_train_epoch_end", self, state)
                    self._validate_epoch(state)
                    call_hook("on_validation_end", self, state)
                    state.result.seconds = time.time() - started
                    self._log_epoch(state.row, state.improved)
                    call_hook("on_epoch_end", self, state)
                # a signal in the last epoch's validation or checkpointing: no batch is
                # left to notice it
                self._stop.check(state.epoch, self.store, self.run_dir, finished=True)
        finally:
            call_hook("teardown", self, state)
            self._wrapped = None
        state.result.seconds = time.time() - started
        dist.barrier()
        call_hook("on_fit_end", self, state)
        return state.result

    def _fit_state(self, model, plan, train, val, collate, resume) -> FitState:
        cfg = self.config
        optimizer = build_optimizer(cfg, plan.param_groups)
        steps_per_epoch = math.ceil(math.ceil(len(train) / cfg.batch_size) / cfg.grad_accum)
        total = max(1, steps_per_epoch * cfg.epochs)
        schedule = cosine_with_warmup(total, int(cfg.warmup * total))
        return FitState(
            model=model,
            plan=plan,
            train=train,
            val=val,
            collate=collate,
            optimizer=optimizer,
            scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
            steps_per_epoch=steps_per_epoch,
            result=FitResult(),
            resume=resume,
            callbacks=[*default_callbacks(), *self.callbacks],
        )

    def _begin_epoch(self, state: FitState, epoch: int) -> None:
        """Reseed, set the epoch's trainable parameters, train/validate the whole model."""
        state.epoch, model = epoch, state.model
        seed_everything(self.config.seed * 1000 + epoch)
        if state.plan.apply(model, epoch) or epoch == state.start_epoch:
            trainable, total = parameter_counts(model)
            self.reporter.log(f"epoch {epoch + 1}: {trainable:,} of {total:,} parameters trainable")
        state.epoch_started = time.time()
        state.epoch_model, state.epoch_collate = model, state.collate
        state.epoch_train, state.epoch_val = state.train, state.val
        state.improved = False

    def _train_epoch(self, state: FitState) -> float:
        cfg, epoch, optimizer = self.config, state.epoch, state.optimizer
        step_model = self._step_model(state.epoch_model)
        state.plan.train_mode(state.model)
        loader = self.loader(
            state.epoch_train, state.epoch_collate, shuffle=True, epoch=epoch, distributed=True
        )
        total = torch.zeros((), device=self.device)
        count = 0
        optimizer.zero_grad(set_to_none=True)
        n_batches = len(loader)
        sizes = [len(indices) for indices in loader.batch_sampler]
        average_from = max(0, n_batches - state.bn_average_batches)
        norms = BatchNormAverage(state.epoch_model if state.bn_average_batches else nn.Identity())
        progress = Throughput(sum(sizes), "items", self.reporter, action="training",
                              label=f"epoch {epoch + 1}/{cfg.epochs}", final=False)  # fmt: skip
        with progress, norms:
            for index, batch in enumerate(loader):
                self._stop.check(epoch, self.store, self.run_dir)
                self.store.check()
                if index == average_from:
                    norms.begin()
                batch = self.to_device(batch)
                with self.autocast():
                    loss = self._training_loss(step_model, batch)
                if not torch.isfinite(loss):
                    raise DataError(
                        f"the training loss became {loss.item()} in epoch {epoch + 1}",
                        "training",
                        "lower --lr, check the data for NaN/huge values",
                    )
                self.scaler.scale(loss / cfg.grad_accum).backward()
                last = index + 1 == n_batches
                if (index + 1) % cfg.grad_accum == 0 or last:
                    if cfg.max_grad_norm:
                        self.scaler.unscale_(optimizer)
                        nn.utils.clip_grad_norm_(state.model.parameters(), cfg.max_grad_norm)
                    self.scaler.step(optimizer)
                    self.scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    state.scheduler.step()
                total += loss.detach()
                count += 1
                progress.add(sizes[index])
        return float(dist.all_reduce_mean(total / max(1, count)).item())

    def _training_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        try:
            return self.task.training_step(model, batch)
        except ValueError as exc:
            if "Expected more than 1 value per channel" not in str(exc):
                raise
            raise ConfigError(
                "a training batch of one item cannot train the model's BatchNorm layers",
                "--batch-size",
                "use --batch-size 2 or more (and at least 2 training items)",
            ) from exc

    def _step_model(self, module: nn.Module) -> nn.Module:
        """``module`` as trained this epoch: DDP-wrapped under torchrun, compiled with
        ``--compile``; rebuilt only when the module or its trainable set changes."""
        key = (id(module), tuple(p.requires_grad for p in module.parameters()))
        if self._wrapped is not None and self._wrapped[0] == key:
            return self._wrapped[1]
        wrapped = module
        if dist.is_distributed() and any(p.requires_grad for p in module.parameters()):
            from torch.nn.parallel import DistributedDataParallel

            wrapped = DistributedDataParallel(
                module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False,
            )
        if self.config.compile:
            wrapped = torch.compile(wrapped)
        self._wrapped = (key, wrapped)
        return wrapped

    def _validate_epoch(self, state: FitState) -> None:
        """Validation (rank 0, shared with all ranks) and the epoch's history row."""
        model = state.model
        dist.sync_buffers(model)
        eval_model = torch.compile(state.epoch_model) if self.config.compile else state.epoch_model
        val_metrics = None
        if dist.is_main():
            val_metrics = self.validate(eval_model, state.epoch_val, state.epoch_collate)
        state.val_metrics = dist.broadcast(val_metrics)
        state.row = {
            "epoch": state.epoch + 1,
            "train_loss": state.train_loss,
            **{f"val_{k}": v for k, v in state.val_metrics.items() if is_scalar(v)},
            "lr": state.optimizer.param_groups[-1]["lr"],
            "trainable_params": parameter_counts(model)[0],
            "seconds": round(time.time() - state.epoch_started, 3),
        }
        state.result.history.append(state.row)

    def _log_epoch(self, row: dict[str, Any], improved: bool) -> None:
        """One short line per epoch: training loss, the monitored validation metric (and the
        validation loss), LR and time; every metric is in history.csv."""
        monitor = f"val_{self.task.monitor}"
        keys = ["train_loss", monitor, "val_loss", "lr", "seconds"]
        shown = {k: row[k] for k in dict.fromkeys(keys) if k in row}
        text = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()
        )
        if not self._star_explained:
            self.reporter.log(
                f"(* after an epoch: {monitor} improved, its weights become the best checkpoint; "
                "all metrics per epoch are in history.csv)"
            )
            self._star_explained = True
        self.reporter.log(
            f"epoch {row['epoch']}/{self.config.epochs} {text}{' *' if improved else ''}"
        )

    # ------------------------------------------------------------- evaluation
    def collect(self, model: nn.Module, dataset: Any, collate: Any = None) -> list[Any]:
        """``predict_step`` over ``dataset`` in eval mode, results on CPU."""
        model.eval()
        outputs = []
        with torch.inference_mode(), self.autocast():
            for batch in self.loader(dataset, collate, shuffle=False):
                outputs.append(to_cpu(self.task.predict_step(model, self.to_device(batch))))
        return outputs

    def validate(self, model: nn.Module, dataset: Any, collate: Any = None) -> dict[str, Any]:
        outputs = self.collect(model, dataset, collate)
        metrics = dict(self.task.metrics(outputs, "val"))
        losses = [o["loss"] for o in outputs if isinstance(o, dict) and "loss" in o]
        if losses and "loss" not in metrics:
            metrics["loss"] = float(
                torch.stack([torch.as_tensor(x).float().mean() for x in losses]).mean()
            )
        return metrics

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(
        self,
        tag: str,
        model: nn.Module,
        progress: dict[str, Any],
        state: dict[str, torch.Tensor] | None = None,
        *,
        training_state: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
        weights_from: str | None = None,
        background: bool = False,
    ) -> None:
        """Write ``checkpoints/{tag}.*`` on the calling rank: the weights (``state``, the
        tensors a plan chose, default ``model``'s state dict) with ``weights_meta()``, the
        epoch of ``progress`` and ``meta``; ``progress`` as ``{tag}.json``; and
        ``training_state`` (optimizer, scheduler…) for ``--resume``. ``weights_from``: the
        tag just saved with the same weights and ``meta`` (its file is shared, not rewritten).
        ``background``: written behind the training loop (`CheckpointStore.save`); the
        store's reads and ``teardown`` wait for it."""
        full_meta = {**self.weights_meta(), "epoch": progress["epoch"], **(meta or {})}
        self.store.save(
            tag, model, full_meta, progress, training_state, state=state,
            weights_from=weights_from, background=background,
        )  # fmt: skip


__all__ = [
    "EpochBatchSampler",
    "FitResult",
    "TrainConfig",
    "Trainer",
    "build_optimizer",
    "cosine_with_warmup",
    "resolve_device",
    "to_cpu",
    "to_device",
]
