"""`tl run`: load → train → evaluate → export → report, as one pipeline.

The core owns this sequence; a plugin only answers the questions of `tl.core.plugin.Plugin`.
Every model a run trains — the main one, ``--compare-scratch``'s, the adversarial run's
plain model — goes through `train_variant` and `evaluate_variant`, and every fitted value
comes back as a `tl.core.plugin.Fitted`, so variants cannot overwrite each other's results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from . import distributed as dist
from .backbones import BackboneSpec, load_tl_weights
from .config import Config
from .errors import ConfigError
from .fileio import write_json_atomic, write_text_atomic
from .interrupts import stop_the_run
from .lr_finder import lr_find_sections, resolve_lr
from .plugin import Fitted, Plugin, TLData
from .progress import ProgressReporter
from .report import write_report
from .run_config import resolve_run_config, scratch_config, train_config
from .run_export import export_run, record_run_fingerprints, summary_line
from .rundir import (
    data_fingerprint,
    make_run_dir,
    remove_stale_temp_files,
    run_status,
    write_config,
    write_manifest,
)
from .seeding import seed_everything
from .strategies import FitContext, StrategyPlan, build_plan, parameter_counts
from .task import Task, plugin_task
from .tracking import track_run
from .trainer import FitResult, Trainer


@dataclass
class Variant:
    """One trained model of a run and what trained it."""

    name: str
    config: Config
    model: Any
    fit: FitResult
    info: dict[str, Any]
    trainer: Trainer


@dataclass(frozen=True)
class Evaluation:
    """A variant's test metrics, its fitted values and its raw test outputs."""

    metrics: dict[str, Any]
    fitted: Fitted
    test_outputs: list[Any]


def build_and_load(
    plugin: Plugin,
    data: TLData,
    options: Config,
    weights: str,
    reporter: ProgressReporter | None = None,
) -> tuple[Any, StrategyPlan, dict[str, Any]]:
    """The model as a run trains it: the plugin's model, the tensors of tl's ``weights`` file
    that fit, then the strategy's plan, which may take saved tensors only it has a place for
    (prompt tokens)."""
    spec = BackboneSpec(name=options["backbone"], weights=weights, options=options)
    model = plugin.build_model(spec, data, options)
    loaded: dict[str, Any] = {"weights": weights}
    skipped_tensors: dict[str, Any] = {}
    if spec.tl_weights is not None:
        summary = load_tl_weights(
            model,
            spec.tl_weights,
            adapt=lambda state, meta: plugin.adapt_weights(state, meta, model, data),
        )
        skipped_tensors = summary.pop("skipped_tensors")
        loaded.update({k: v for k, v in summary.items() if k != "meta"})
        loaded["skipped"] = len(summary["skipped"])
    plan = build_plan(model, options)
    if skipped_tensors:
        from .strategies.prompt import carry_prompt_tokens

        carried, note = carry_prompt_tokens(model, skipped_tensors, str(options["strategy"]))
        if carried:
            loaded["loaded"] += 1
            loaded["skipped"] -= 1
        if note:
            loaded["weights_notes"] = [note]
            if reporter is not None:
                reporter.log(note)
    return model, plan, loaded


def restore_run_model(plugin: Plugin, data: TLData, options: Config, checkpoint: Path) -> Any:
    """A finished run's model as it evaluated and exported it: built the way the run built
    it (`build_and_load` with the run's resolved ``options``), then every tensor of its
    ``checkpoint`` loaded (lora: the merged weights; prompt: with the tokens; prototypes:
    the prototype head). Raises `tl.core.errors.DataError` when the checkpoint does not fit."""
    from .checkpoints import load_weights_into

    model, plan, _ = build_and_load(plugin, data, options, "none")
    load_weights_into(model, checkpoint, plan.load_finished_state)
    return model.eval()


def train_variant(
    plugin: Plugin,
    data: TLData,
    config: Config,
    run_dir: Path,
    reporter: ProgressReporter,
    name: str = "main",
    resume: bool = False,
    task: Callable[[Task, Any], Task] | None = None,
    callbacks: Sequence[Any] = (),
) -> Variant:
    """Build, load and train one model of the run in ``run_dir`` (a variant's own folder).

    ``task`` maps the plugin's task to the one to train (adversarial, distillation);
    ``callbacks`` (`tl.core.Callback`) run after the trainer's own ones."""
    seed_everything(int(config["seed"]))
    model, plan, loaded = build_and_load(plugin, data, config, config["weights"], reporter)
    trainable, total = parameter_counts(model)
    info = {
        **loaded,
        "strategy": config["strategy"],
        "trainable_params": trainable,
        "total_params": total,
        "stages": plan.n_stages,
    }
    base = plugin_task(plugin, data)
    trainer = Trainer(
        train_config(config),
        task(base, model) if task is not None else base,
        run_dir,
        reporter,
        weights_meta=lambda: {
            "plugin": plugin.name,
            "backbone": config["backbone"],
            "labels": data.labels,
            "weights_meta": plugin.weights_metadata(model, data),
        },
        tensorboard=name == "main",
        callbacks=callbacks,
    )
    context = FitContext.for_data(
        trainer,
        model,
        data,
        split_batch=plugin.split_batch,
        seed=int(config["seed"]),
        shots=config.get("shots"),
        resume=resume,
    )
    fit = plan.fit(context)
    if dist.is_main():
        write_text_atomic(run_dir / "history.csv", pd.DataFrame(fit.history).to_csv(index=False))
    return Variant(name, config, context.model, fit, info, trainer)


def evaluate_variant(plugin: Plugin, data: TLData, variant: Variant) -> Evaluation:
    """Test metrics of a trained variant, with what the plugin fits on validation."""
    trainer, model = variant.trainer, variant.model
    outputs = {
        "val": trainer.collect(model, data.val, data.collate),
        "test": trainer.collect(model, data.test, data.collate),
    }
    metrics = dict(plugin.metrics(outputs["test"], data, "test"))
    fitted = plugin.finalize(model, data, outputs, variant.config)
    if not isinstance(fitted, Fitted):
        raise TypeError(f"{type(plugin).__name__}.finalize must return tl.core.Fitted")
    metrics.update(fitted.metrics)
    return Evaluation(metrics, fitted, outputs["test"])


def run_plugin(
    plugin: Plugin,
    options: dict[str, Any],
    reporter: ProgressReporter | None = None,
    callbacks: Sequence[Any] = (),
    run_dir: Path | None = None,
) -> Path:
    """The whole `tl run`; returns the run directory. ``options``: flag values (None = not
    given) plus ``config`` (a YAML file) and ``resume`` (a run directory).

    ``callbacks`` (`tl.core.Callback`) see the main model's training (e.g. a tuner's pruner,
    experiment tracking); ``run_dir``: a fresh directory to use instead of ``out/PLUGIN-time``
    (created here; it must not exist yet)."""
    flags = dict(options)
    resume_dir = flags.pop("resume", None)
    config = resolve_run_config(plugin, flags, resume_dir)
    owns_group = not dist.is_distributed() and dist.setup(str(config["device"]))
    seed_everything(int(config["seed"]))
    data = plugin.load(Path(config["data"]), config)
    if resume_dir:
        run_dir = Path(resume_dir)
        if dist.is_main():
            remove_stale_temp_files(run_dir)
    elif dist.is_main():
        run_dir = _fresh_dir(run_dir) if run_dir else make_run_dir(Path(config["out"]), plugin.name)
        write_config(run_dir, plugin, config)
    run_dir = Path(dist.broadcast(str(run_dir) if dist.is_main() else None))
    if not dist.is_main():  # rank 0 logs and writes; the other ranks only train
        config = resolve_lr(plugin, data, config, run_dir, None, build_and_load)
        _train_only(plugin, data, config, run_dir, bool(resume_dir), callbacks)
    else:
        reporter = reporter or ProgressReporter()
        reporter.log_file = run_dir / "log.txt"
        with (
            run_status(run_dir, plugin, config),
            stop_the_run(run_dir),
            track_run(plugin, config, run_dir, reporter) as t,
        ):
            config = resolve_lr(plugin, data, config, run_dir, reporter, build_and_load)
            _run_main(plugin, data, config, run_dir, reporter, bool(resume_dir), [*callbacks, *t])
    if owns_group:
        dist.cleanup()
    return run_dir


def _fresh_dir(path: Path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()
    except FileExistsError as exc:
        raise ConfigError("the run directory exists", path, "pick a new one") from exc
    except OSError as exc:
        raise ConfigError("cannot create the run directory", path, "pick a writable --out") from exc
    return path


def _run_main(
    plugin: Plugin,
    data: TLData,
    config: Config,
    run_dir: Path,
    reporter: ProgressReporter,
    resume: bool,
    callbacks: Sequence[Any] = (),
) -> None:
    if dist.is_distributed():
        reporter.log(f"distributed: {dist.world_size()} processes")
    reporter.log(f"run directory {run_dir}")
    started = time.time()
    write_text_atomic(run_dir / "splits.csv", data.splits.to_csv(index=False))
    counts = {f"n_{s}": len(getattr(data, s)) for s in ("train", "val", "test")}
    reporter.log(f"data: {counts['n_train']} train, {counts['n_val']} val, {counts['n_test']} test")

    main = train_variant(
        plugin, data, config, run_dir, reporter, resume=resume, task=_task(plugin, config),
        callbacks=callbacks,
    )  # fmt: skip
    result = evaluate_variant(plugin, data, main)
    metrics_json: dict[str, Any] = {
        "plugin": plugin.name,
        "task": data.task or plugin.task,
        "backbone": config["backbone"],
        "weights": config["weights"],
        "strategy": config["strategy"],
        **counts,
        "train_seconds": round(main.fit.seconds, 2),
        "epochs_run": len(main.fit.history),
        "best_epoch": main.fit.best_epoch,
        "monitor": plugin.monitor,
        "trainable_params": main.info["trainable_params"],
        "total_params": main.info["total_params"],
        **result.metrics,
    }
    scratch_history = None
    if config["compare_scratch"]:
        reporter.log("training the same model from random init (--compare-scratch)")
        scratch = _sub_variant(plugin, data, scratch_config(config), run_dir, reporter,
                               "scratch", resume)  # fmt: skip
        s_metrics = evaluate_variant(plugin, data, scratch).metrics
        scratch_history = scratch.fit.history
        metrics_json["scratch"] = {"train_seconds": round(scratch.fit.seconds, 2), **s_metrics}
        metrics_json["transfer_gain"] = {
            key: result.metrics[key] - s_metrics[key]
            for key in result.metrics
            if isinstance(result.metrics.get(key), float) and isinstance(s_metrics.get(key), float)
        }
        del scratch
    if config["adversarial"]:
        metrics_json["adversarial"] = _adversarial(plugin, data, main, run_dir, reporter, resume)

    metrics_json["onnx_parity"], _ = export_run(
        plugin, main.model, data, result, run_dir, reporter,
        {"backbone": config["backbone"], "strategy": config["strategy"]},
    )  # fmt: skip
    write_json_atomic(run_dir / "metrics.json", metrics_json)
    record_run_fingerprints(plugin, data, config, run_dir, reporter)

    from .adversarial import report_sections

    sections = list(plugin.report(run_dir, metrics_json, data, main.model, result.fitted) or [])
    sections += report_sections(metrics_json) + lr_find_sections(run_dir)
    write_report(run_dir, plugin, config, metrics_json, main.fit.history, data, main.info,
                 sections, scratch_history)  # fmt: skip
    write_manifest(
        run_dir,
        plugin,
        config,
        {
            "data": data_fingerprint(Path(config["data"])),
            "wall_seconds": round(time.time() - started, 2),
        },
    )
    reporter.log(summary_line(plugin, metrics_json))


def _task(plugin: Plugin, config: Config) -> Callable[[Task, Any], Task] | None:
    """The adversarial training task when ``--adversarial`` is set (else the plugin's)."""
    if not config["adversarial"]:
        return None
    from .adversarial import wrap_task

    return lambda task, model: wrap_task(task, plugin, config, model)


def _sub_variant(
    plugin: Plugin,
    data: TLData,
    config: Config,
    run_dir: Path,
    reporter: ProgressReporter,
    name: str,
    resume: bool,
) -> Variant:
    folder = run_dir / name
    if dist.is_main():
        folder.mkdir(exist_ok=True)
    return train_variant(plugin, data, config, folder, reporter, name=name, resume=resume,
                         task=_task(plugin, config))  # fmt: skip


def _adversarial(
    plugin: Plugin,
    data: TLData,
    main: Variant,
    run_dir: Path,
    reporter: ProgressReporter,
    resume: bool,
) -> dict[str, Any]:
    """Robust accuracy of the model, and (unless ``--no-adversarial-plain``) of the same
    recipe trained without attacks (in ``plain/``)."""
    from .adversarial import adversarial_report

    plain_model, plain_seconds = None, None
    if main.config["adversarial_plain"]:
        reporter.log("training the same model without adversarial examples (for comparison)")
        plain = _sub_variant(plugin, data, main.config.replace(adversarial=None), run_dir,
                             reporter, "plain", resume)  # fmt: skip
        plain_model, plain_seconds = plain.model, round(plain.fit.seconds, 2)
    reporter.log(f"attacking the test split ({main.config['adversarial']})")
    result = adversarial_report(
        plugin, data, main.model, main.config, main.trainer.device, plain_model, plain_seconds
    )
    line = f"robust accuracy {result['robust_accuracy']:.4f} (clean {result['clean_accuracy']:.4f})"
    if "plain" in result:
        line += f"; plain model {result['plain']['robust_accuracy']:.4f}"
    reporter.log(line)
    return result


def _train_only(
    plugin: Plugin,
    data: TLData,
    config: Config,
    run_dir: Path,
    resume: bool,
    callbacks: Sequence[Any] = (),
) -> None:
    """A non-zero rank's part of `tl run`: the same training steps, nothing written."""
    quiet = ProgressReporter(enabled=False)
    train_variant(plugin, data, config, run_dir, quiet, resume=resume, task=_task(plugin, config),
                  callbacks=callbacks)  # fmt: skip
    if config["compare_scratch"]:
        train_variant(plugin, data, scratch_config(config), run_dir / "scratch", quiet,
                      name="scratch", resume=resume, task=_task(plugin, config))  # fmt: skip


def pretrain_plugin(
    plugin: Plugin, options: dict[str, Any], reporter: ProgressReporter | None = None
) -> Path:
    """`tl pretrain` (kept here for callers of ``tl.core.run``)."""
    from .pretraining import pretrain_plugin as run_pretrain

    return run_pretrain(plugin, options, reporter)


__all__ = [
    "ConfigError",
    "Evaluation",
    "Variant",
    "evaluate_variant",
    "export_run",
    "pretrain_plugin",
    "restore_run_model",
    "run_plugin",
    "train_variant",
]
