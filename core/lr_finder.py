"""`tl run … --lr find`: a fastai-style learning-rate range test before training.

A throwaway copy of the run's model (built like the run builds it, the strategy's plan
applied) trains on training batches while the peak LR grows exponentially from `START` to
`END`; the loss is smoothed (exponential average, debiased) and the test stops once it
diverges (`DIVERGE` × the lowest loss so far). The chosen LR is fastai's "valley": the
point two thirds down the longest stretch in which the loss keeps falling. It replaces
``find`` in the run's config (so config.yaml records the number and ``tl run --config``
reproduces the run); ``lr_find.json`` and ``lr_find.png`` keep the curve for the report.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import distributed as dist
from .config import Config
from .errors import ConfigError
from .fileio import atomic_path, write_json_atomic
from .plugin import Plugin, ReportSection, TLData
from .progress import ProgressReporter
from .rundir import write_config

START, END = 1e-7, 10.0
MIN_STEPS, MAX_STEPS = 30, 100
DIVERGE = 4.0
BETA = 0.98
JSON_NAME, PLOT_NAME = "lr_find.json", "lr_find.png"


@dataclass(frozen=True)
class RangeTest:
    """One range test: the LR of every step, the smoothed loss there, and the choice."""

    lrs: list[float]
    losses: list[float]
    chosen: float
    min_loss_lr: float
    steps: int
    seconds: float
    method: str = "valley"
    start: float = START
    end: float = END


def valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's suggestion: the LR two thirds of the way down the longest run of
    decreasing losses (the first tenth and the last five points are left out as noise)."""
    skip_head, skip_tail = len(lrs) // 10, 5 if len(lrs) > 15 else 0
    lrs = list(lrs[skip_head : len(lrs) - skip_tail])
    losses = list(losses[skip_head : len(losses) - skip_tail])
    n = len(losses)
    if n == 0:
        raise ValueError("no losses")
    longest = [1] * n  # longest decreasing subsequence ending at i
    best_start = best_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[i] > longest[best_end]:
            best_end = i
            best_start = best_end - longest[best_end]
    third = (best_end - best_start) / 3
    index = min(n - 1, max(0, best_start + int(third) + int(third / 2)))
    return float(lrs[index])


def range_test(
    trainer: Any, model: Any, plan: Any, train: Any, collate: Any, steps: int
) -> RangeTest:
    """Train ``model`` (``plan.param_groups`` built with lr 1, so their ``lr`` are relative
    factors, e.g. llrd's per-stage decay) for up to ``steps`` batches at growing LR."""
    import torch

    from .optim import build_optimizer

    started = time.time()
    model = trainer.prepare(model)
    plan.apply(model, 0)
    plan.train_mode(model)
    optimizer = build_optimizer(trainer.config, plan.param_groups)
    factors = [group["lr"] for group in optimizer.param_groups]
    growth = (END / START) ** (1 / max(1, steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    average, lowest = 0.0, math.inf
    batches = _batches(trainer, train, collate)
    for step in range(steps):
        lr = START * growth**step
        for group, factor in zip(optimizer.param_groups, factors, strict=True):
            group["lr"] = lr * factor
        batch = trainer.to_device(next(batches))
        with trainer.autocast():
            loss = trainer.task.training_step(model, batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(optimizer)
        trainer.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        average = BETA * average + (1 - BETA) * value
        smoothed = average / (1 - BETA ** (step + 1))
        lrs.append(lr)
        losses.append(smoothed)
        lowest = min(lowest, smoothed)
        if step > 5 and smoothed > DIVERGE * lowest:
            break
    del model, optimizer
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if len(losses) < 5:
        raise ConfigError(
            "the learning-rate range test diverged at once",
            "--lr find",
            "check the data, or give a number, e.g. --lr 1e-3",
        )
    return RangeTest(
        lrs=lrs,
        losses=losses,
        chosen=valley(lrs, losses),
        min_loss_lr=lrs[losses.index(min(losses))],
        steps=len(lrs),
        seconds=round(time.time() - started, 2),
    )


def _batches(trainer: Any, train: Any, collate: Any) -> Any:
    """Training batches, pass after pass (a small dataset has fewer batches than steps)."""
    epoch = 0
    while True:
        loader = trainer.loader(train, collate, shuffle=True, epoch=50_000 + epoch, keep=False)
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            raise ConfigError("no training batches for the LR range test", "--lr find",
                              "add training data or lower --batch-size")  # fmt: skip
        epoch += 1


def steps_for(n_train: int, batch_size: int) -> int:
    """At most `MAX_STEPS` batches, at least `MIN_STEPS`, else two passes over the data."""
    per_pass = max(1, math.ceil(n_train / max(1, batch_size)))
    return min(MAX_STEPS, max(MIN_STEPS, 2 * per_pass))


def resolve_lr(
    plugin: Plugin,
    data: TLData,
    config: Config,
    run_dir: Path,
    reporter: ProgressReporter | None,
    build: Callable[..., tuple[Any, Any, dict[str, Any]]],
) -> Config:
    """``config`` with ``lr: find`` replaced by the range test's choice (run on rank 0 and
    shared), recorded in ``run_dir``'s config.yaml; unchanged when lr is a number.
    ``build``: the run's model builder (`tl.core.run.build_and_load`)."""
    if config["lr"] != "find":
        return config
    from .strategies import parse_strategy

    if parse_strategy(str(config["strategy"]))[0] == "prototypes":
        raise ConfigError(
            "--lr find needs a strategy that trains by gradient descent",
            "--strategy prototypes",
            "drop --lr find (prototypes have no learning rate)",
        )
    chosen = None
    if dist.is_main():
        result = _find(plugin, data, config, run_dir, reporter, build)
        chosen = result.chosen
    chosen = float(dist.broadcast(chosen))
    config = config.replace(lr=chosen)
    if dist.is_main():
        write_config(run_dir, plugin, config)
    return config


def _find(
    plugin: Plugin,
    data: TLData,
    config: Config,
    run_dir: Path,
    reporter: ProgressReporter | None,
    build: Callable[..., tuple[Any, Any, dict[str, Any]]],
) -> RangeTest:
    from .run_config import train_config
    from .seeding import seed_everything
    from .task import plugin_task
    from .trainer import Trainer

    reporter = reporter or ProgressReporter()
    unit = config.replace(lr=1.0)
    seed_everything(int(config["seed"]))
    model, plan, _ = build(plugin, data, unit, config["weights"])
    trainer = Trainer(
        train_config(unit),
        plugin_task(plugin, data),
        run_dir,
        ProgressReporter(enabled=False),
        tensorboard=False,
    )
    steps = steps_for(len(data.train), int(config["batch_size"]))
    reporter.log(f"--lr find: LR range test, up to {steps} batches from {START:g} to {END:g}")
    result = range_test(trainer, model, plan, data.train, data.collate, steps)
    write_json_atomic(run_dir / JSON_NAME, asdict(result))
    plot_range_test(result, run_dir / PLOT_NAME)
    reporter.log(
        f"--lr find: chose lr={result.chosen:.3g} ({result.method}; lowest loss at "
        f"{result.min_loss_lr:.3g}) after {result.steps} batches in {result.seconds:.1f}s"
    )
    return result


def plot_range_test(result: RangeTest, path: Path) -> str:
    """Loss vs LR (log axis) with the chosen LR marked; returns the file name."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses, label="training loss (smoothed)")
    ax.axvline(result.chosen, color="tab:red", linestyle="--",
               label=f"chosen lr {result.chosen:.2g} ({result.method})")  # fmt: skip
    ax.axvline(result.min_loss_lr, color="tab:gray", linestyle=":",
               label=f"lowest loss at {result.min_loss_lr:.2g}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("loss")
    ax.set_title("Learning-rate range test (--lr find)")
    ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


def lr_find_sections(run_dir: Path) -> list[ReportSection]:
    """report.md's section on the range test, when this run had one."""
    try:
        found = json.loads((Path(run_dir) / JSON_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    text = (
        f"`--lr find` ran a range test over {found['steps']} training batches, the peak LR "
        f"growing from {found['start']:g} to {found['end']:g} ({found['seconds']} s). Chosen: "
        f"**lr = {found['chosen']:.3g}** (fastai's valley rule; the lowest loss was at "
        f"{found['min_loss_lr']:.3g}). config.yaml records this number, so "
        "`tl run --config config.yaml` trains with it."
    )
    images = [PLOT_NAME] if (Path(run_dir) / PLOT_NAME).exists() else []
    return [ReportSection("Learning rate (range test)", text, images)]


__all__ = ["RangeTest", "lr_find_sections", "range_test", "resolve_lr", "steps_for", "valley"]
