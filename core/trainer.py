"""The training loop shared by every plugin: fit → train epoch / validation epoch.

The loop is duck-typed on a *task* (``training_step``, ``predict_step``, ``metrics``,
``monitor``, ``monitor_mode``) so a classifier, a tabular model, a sequence recommender
and a detector all go through the same code: device placement, AMP, gradient accumulation,
cosine schedule with warmup, early stopping, checkpoints and resume, history and TensorBoard.

Reproducibility: every epoch reseeds all RNGs from ``seed + epoch`` and its shuffling comes
from a generator with the same seed. An epoch therefore depends only on the state saved at
the end of the previous one, and ``--resume`` after a kill ends where an uninterrupted run
ends (bit for bit on CPU).
"""

from __future__ import annotations

import math
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from . import distributed as dist
from .checkpoints import CheckpointStore
from .errors import ConfigError, DataError, Interrupted
from .feature_cache import FeatureCache, HeadOnly, collate_batch, parse_mode, wants_cache
from .progress import ProgressReporter
from .seeding import seed_everything
from .strategies import StrategyPlan, parameter_counts


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
    precise_bn_batches: int = 50
    cache_features: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float | None = None
    stopped_early: bool = False
    seconds: float = 0.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "CUDA was requested but no GPU is available",
            "--device cuda",
            "use --device cpu or auto",
        )
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"unknown device '{name}'", "--device", "use auto, cpu or cuda")
    return torch.device(name)


def to_device(batch: Any, device: torch.device, non_blocking: bool = True) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device, non_blocking) for v in batch]
        return type(batch)(moved) if not hasattr(batch, "_fields") else type(batch)(*moved)
    return batch


def to_cpu(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        output = output.detach()
        if output.is_floating_point() and output.dtype != torch.float64:
            output = output.float()
        return output.cpu()
    if isinstance(output, dict):
        return {k: to_cpu(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        return type(output)(to_cpu(v) for v in output)
    return output


def cosine_with_warmup(
    total_steps: int, warmup_steps: int, floor: float = 0.01
) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_optimizer(
    config: TrainConfig, param_groups: list[dict[str, Any]]
) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    raise ConfigError(f"unknown optimizer '{config.optimizer}'", "--optimizer", "use adamw or sgd")


def _improved(score: float, best: float | None, mode: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(score)
    return score > best if mode == "max" else score < best


class Trainer:
    """Trains ``model`` on a task; writes checkpoints, history and TensorBoard into ``run_dir``."""

    def __init__(
        self,
        config: TrainConfig,
        task: Any,
        run_dir: Path,
        reporter: ProgressReporter | None = None,
        weights_meta: Callable[[], dict[str, Any]] | None = None,
        tensorboard: bool = True,
    ) -> None:
        self.config = config
        self.task = task
        self.run_dir = Path(run_dir)
        self.reporter = reporter or ProgressReporter()
        self.weights_meta = weights_meta or dict
        self.store = CheckpointStore(self.run_dir)
        self.device = dist.device_for(resolve_device(config.device))
        self.tensorboard = tensorboard and dist.is_main()
        if not dist.is_main():
            self.reporter = ProgressReporter(enabled=False)
        self._loaders: dict[Any, tuple[Any, DataLoader]] = {}
        self._wrapped: tuple[Any, nn.Module] | None = None
        cuda = self.device.type == "cuda"
        self.amp_dtype = None
        if cuda and config.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if cuda:
            torch.backends.cudnn.benchmark = True

    # ----------------------------------------------------------------- loaders
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
        distributed = distributed and dist.is_distributed()
        key = (id(dataset), id(collate), shuffle, distributed, batch_size)
        cached = self._loaders.get(key)
        if cached is None or cached[0] is not dataset:
            batch_size = batch_size or self.config.batch_size
            if distributed:
                batch_size = dist.local_batch_size(batch_size)
            sampler = EpochBatchSampler(
                dataset, batch_size, shuffle, self.config.seed * 1000, distributed
            )
            workers = 0 if collate is collate_batch else self.config.num_workers
            loader = DataLoader(
                _BatchSeeded(dataset),
                batch_sampler=sampler,
                collate_fn=collate,
                num_workers=workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=workers > 0 and keep,
            )
            cached = (dataset, loader)
            if keep:
                self._loaders[key] = cached
        cached[1].batch_sampler.set_epoch(epoch)
        return cached[1]

    def to_device(self, batch: Any) -> Any:
        """``batch`` on the device (non-blocking from pinned memory); on CUDA image batches
        go channels_last like the model."""
        batch = to_device(batch, self.device)
        if self.device.type == "cuda" and self.config.channels_last:
            batch = _channels_last(batch)
        return batch

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

    def _autocast(self) -> Any:
        return torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None,
        )

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
        cfg = self.config
        if len(train) == 0:
            raise DataError("the training split is empty", "train", "add data or change the split")
        model = self.prepare(model)
        cache_mode = parse_mode(cfg.cache_features)
        cache = FeatureCache(self.run_dir)
        optimizer = build_optimizer(cfg, plan.param_groups)
        steps_per_epoch = math.ceil(math.ceil(len(train) / cfg.batch_size) / cfg.grad_accum)
        total = max(1, steps_per_epoch * cfg.epochs)
        schedule = cosine_with_warmup(total, int(cfg.warmup * total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        result = FitResult()
        start_epoch, bad_epochs = 0, 0
        if resume and self.store.exists("last"):
            start_epoch, bad_epochs, result = self._restore(model, plan, optimizer, scheduler)
            self.reporter.log(f"resumed after epoch {start_epoch} (best epoch {result.best_epoch})")
        writer = self._writer()
        started = time.time() - result.seconds
        restore_signals = self._catch_stop_signals()
        try:
            for epoch in range(start_epoch, cfg.epochs):
                if result.stopped_early:
                    break
                seed_everything(cfg.seed * 1000 + epoch)
                if plan.apply(model, epoch) or epoch == start_epoch:
                    trainable, total_params = parameter_counts(model)
                    self.reporter.log(
                        f"epoch {epoch + 1}: {trainable:,} of {total_params:,} parameters trainable"
                    )
                t0 = time.time()
                epoch_model, epoch_train, epoch_val, epoch_collate = model, train, val, collate
                if not cache.failed and wants_cache(cache_mode, model):
                    if not cache.splits and cache.build(self, model, train, val, collate):
                        self.reporter.log(
                            f"cached backbone features of {len(train)} train and {len(val)} val "
                            f"items in {time.time() - t0:.1f}s"
                        )
                        seed_everything(cfg.seed * 1000 + epoch)
                    if cache.splits:
                        epoch_model, epoch_collate = HeadOnly(model), collate_batch
                        epoch_train, epoch_val = cache.splits["train"], cache.splits["val"]
                elif cache.splits:
                    cache.close()
                step_model = self._step_model(epoch_model)
                train_loss = self._train_epoch(
                    step_model, model, plan, optimizer, scheduler, epoch_train, epoch_collate, epoch
                )
                if (epoch + 1) * steps_per_epoch < cfg.precise_bn_below_steps:
                    self._precise_bn(model, plan, train, collate, epoch)
                dist.sync_buffers(model)
                eval_model = torch.compile(epoch_model) if cfg.compile else epoch_model
                val_metrics = None
                if dist.is_main():
                    val_metrics = self.validate(eval_model, epoch_val, epoch_collate)
                val_metrics = dist.broadcast(val_metrics)
                row = {
                    "epoch": epoch + 1,
                    "train_loss": train_loss,
                    **{f"val_{k}": v for k, v in val_metrics.items() if _is_scalar(v)},
                    "lr": optimizer.param_groups[-1]["lr"],
                    "trainable_params": parameter_counts(model)[0],
                    "seconds": round(time.time() - t0, 3),
                }
                result.history.append(row)
                score = float(val_metrics.get(self.task.monitor, float("nan")))
                improved = _improved(score, result.best_score, self.task.monitor_mode)
                if improved:
                    result.best_score, result.best_epoch, bad_epochs = score, epoch + 1, 0
                else:
                    bad_epochs += 1
                if cfg.patience and bad_epochs >= cfg.patience:
                    result.stopped_early = True
                result.seconds = time.time() - started
                self._log_epoch(row, writer, improved)
                progress = self._progress(epoch + 1, bad_epochs, result)
                # what a checkpoint holds is the strategy's choice (lora: merged weights)
                state = plan.checkpoint_state(model) if dist.is_main() else None
                if improved and dist.is_main():
                    self.store.save("best", model, self._meta(epoch + 1), progress, state=state)
                if dist.is_main():
                    self.store.save(
                        "last",
                        model,
                        self._meta(epoch + 1),
                        progress,
                        {
                            "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(),
                            "scaler": self.scaler.state_dict(),
                        },
                        state=state,
                    )
                if result.stopped_early:
                    self.reporter.log(
                        f"early stop: no improvement of {self.task.monitor} for {bad_epochs} epochs"
                    )
        finally:
            restore_signals()
            if writer is not None:
                writer.close()
            cache.close()
            self._wrapped = None
        result.seconds = time.time() - started
        dist.barrier()
        if self.store.exists("best"):
            self.store.load_model("best", model, plan.load_checkpoint_state)
        return result

    def _train_epoch(
        self, step_model, model, plan, optimizer, scheduler, train, collate, epoch
    ) -> float:
        cfg = self.config
        plan.train_mode(model)
        loader = self.loader(train, collate, shuffle=True, epoch=epoch, distributed=True)
        total = torch.zeros((), device=self.device)
        count = 0
        optimizer.zero_grad(set_to_none=True)
        n_batches = len(loader)
        with self.reporter.bar(n_batches, f"epoch {epoch + 1}/{cfg.epochs}") as bar:
            for index, batch in enumerate(loader):
                self._check_stop(epoch)
                batch = self.to_device(batch)
                with self._autocast():
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
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    self.scaler.step(optimizer)
                    self.scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                total += loss.detach()
                count += 1
                bar.update(1)
        return float(dist.all_reduce_mean(total / max(1, count)).item())

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

    def _precise_bn(self, model, plan, train, collate, epoch) -> None:
        """Recompute BatchNorm running statistics of the trainable BN layers as a true
        average over training batches ("precise BN").

        Early in training the exponential running averages lag far behind weights that
        move fast, so a short run from scratch validates much worse in eval mode than it
        trains. Past ``precise_bn_below_steps`` optimizer steps the lag is negligible and
        this is skipped.
        """
        plan.train_mode(model)
        norms = [
            m
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.training
            and m.track_running_stats
        ]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        loader = self.loader(train, collate, shuffle=True, epoch=100_000 + epoch)
        with torch.no_grad(), self._autocast():
            for index, batch in enumerate(loader):
                if index >= self.config.precise_bn_batches:
                    break
                self.task.training_step(model, self.to_device(batch))
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum

    # ------------------------------------------------------------- evaluation
    def collect(self, model: nn.Module, dataset: Any, collate: Any = None) -> list[Any]:
        """``predict_step`` over ``dataset`` in eval mode, results on CPU."""
        model.eval()
        outputs = []
        with torch.inference_mode(), self._autocast():
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

    # ---------------------------------------------------------------- signals
    def _catch_stop_signals(self) -> Callable[[], None]:
        """SIGINT/SIGTERM set a flag that the loop checks between batches (a batch or a
        checkpoint is never cut in half); returns what restores the previous handlers."""
        self._stop_signal: int | None = None
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum: int, frame: Any) -> None:
            if self._stop_signal is not None:  # a second Ctrl-C: stop right now
                raise KeyboardInterrupt
            self._stop_signal = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        return lambda: [signal.signal(s, h) for s, h in previous.items()] and None

    def _check_stop(self, epoch: int) -> None:
        signum = getattr(self, "_stop_signal", None)
        if signum is None:
            return
        name = signal.Signals(signum).name
        kept = self.store.progress("last")["epoch"] if self.store.exists("last") else None
        raise Interrupted(
            signum,
            f"interrupted by {name} in epoch {epoch + 1}; "
            + (f"checkpoint of epoch {kept} kept" if kept else "no epoch was complete yet"),
            self.run_dir,
            f"continue with --resume {self.run_dir}"
            + (" (the unfinished epoch is redone, so the result matches an uninterrupted run)"),
        )

    # ------------------------------------------------------------ bookkeeping
    def _meta(self, epoch: int) -> dict[str, Any]:
        return {**self.weights_meta(), "epoch": epoch}

    def _progress(self, epoch: int, bad_epochs: int, result: FitResult) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "bad_epochs": bad_epochs,
            "best_epoch": result.best_epoch,
            "best_score": result.best_score,
            "stopped_early": result.stopped_early,
            "seconds": result.seconds,
            "history": result.history,
        }

    def _restore(self, model, plan, optimizer, scheduler) -> tuple[int, int, FitResult]:
        progress = self.store.progress("last")
        self.store.load_model("last", model, plan.load_checkpoint_state)
        state = self.store.training_state("last")
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        result = FitResult(
            history=list(progress["history"]),
            best_epoch=progress["best_epoch"],
            best_score=progress["best_score"],
            stopped_early=progress["stopped_early"],
            seconds=progress.get("seconds", 0.0),
        )
        return int(progress["epoch"]), int(progress["bad_epochs"]), result

    def _writer(self) -> Any:
        if not self.tensorboard:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.run_dir / "tb"))

    def _log_epoch(self, row: dict[str, Any], writer: Any, improved: bool) -> None:
        shown = {k: v for k, v in row.items() if k not in ("epoch", "trainable_params")}
        text = " ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()
        )
        self.reporter.log(
            f"epoch {row['epoch']}/{self.config.epochs} {text}{' *' if improved else ''}"
        )
        if writer is not None:
            for key, value in row.items():
                if key != "epoch" and _is_scalar(value):
                    writer.add_scalar(
                        key.replace("val_", "val/").replace("train_", "train/"), value, row["epoch"]
                    )
            writer.flush()


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of indices in an order fixed by ``seed + epoch`` (``set_epoch``).

    Shuffled order is ``torch.randperm(n)`` from a generator seeded with ``seed + epoch`` —
    exactly `DistributedSampler`'s permutation, which supplies the order under DDP: rank r
    gets items r, r+W, … of each global batch, so W ranks with ``batch_size / W`` see the
    same global batches as one process with ``batch_size``.
    """

    def __init__(
        self, dataset: Any, batch_size: int, shuffle: bool, seed: int, distributed: bool
    ) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = len(dataset), batch_size, shuffle, seed
        self.epoch = 0
        self.sampler = (
            DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=False)
            if distributed
            else None
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)

    def _order(self) -> list[int]:
        if self.sampler is not None:
            return list(self.sampler)
        if not self.shuffle:
            return list(range(self.n))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=generator).tolist()

    def _starts(self, n: int) -> list[int]:
        """Batch start offsets. When shuffling (training), a last batch of one item joins
        the batch before it: BatchNorm cannot train on a single item."""
        starts = list(range(0, n, self.batch_size))
        if self.shuffle and len(starts) > 1 and n - starts[-1] == 1:
            starts.pop()
        return starts

    def __iter__(self):
        order = self._order()
        starts = self._starts(len(order))
        for number, start in enumerate(starts):
            end = starts[number + 1] if number + 1 < len(starts) else len(order)
            batch_seed = (self.seed + self.epoch) * 100_003 + number
            yield [(batch_seed, i) for i in order[start:end]]

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else self.n
        return len(self._starts(n))


class _BatchSeeded(torch.utils.data.Dataset):
    """Takes the sampler's ``(batch_seed, index)`` keys. In a worker process it reseeds the
    RNGs from the batch's seed before fetching, so augmentation in persistent workers depends
    on (seed, epoch, batch) only, not on worker history; in the main process the per-epoch
    ``seed_everything`` already fixes it."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        return self.dataset[key[1] if isinstance(key, tuple) else key]

    def __getitems__(self, keys: list[Any]) -> Any:
        if torch.utils.data.get_worker_info() is not None:
            seed = keys[0][0]
            random.seed(seed)
            np.random.seed(seed % (2**32))
            torch.manual_seed(seed)
        indices = [k[1] for k in keys]
        many = getattr(self.dataset, "__getitems__", None)
        return many(indices) if many else [self.dataset[i] for i in indices]


def _channels_last(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.ndim == 4 else batch
    if isinstance(batch, dict):
        return {k: _channels_last(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and not hasattr(batch, "_fields"):
        return type(batch)(_channels_last(v) for v in batch)
    return batch


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
