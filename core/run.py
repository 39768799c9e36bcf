"""`tl run` and `tl pretrain`: load → build → train → evaluate → export → report.

The core owns this sequence; a plugin only answers the questions of `tl.core.plugin.Plugin`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from . import distributed as dist
from .adversarial import compare_plain, report_sections, wrap_task
from .backbones import BackboneSpec, load_tl_weights
from .errors import ConfigError, TLError
from .export import export_onnx
from .fileio import write_json_atomic, write_text_atomic
from .plugin import ExportSpec, Plugin, TLData
from .progress import ProgressReporter
from .report import write_report
from .rundir import data_fingerprint, make_run_dir, read_config, write_config, write_manifest
from .seeding import seed_everything
from .strategies import StrategyPlan, build_plan, parameter_counts, parse_strategy
from .trainer import FitResult, TrainConfig, Trainer

DEFAULTS: dict[str, Any] = {
    "backbone": None,
    "weights": "hub",
    "strategy": "full",
    "epochs": 10,
    "batch_size": 32,
    "lr": 1e-3,
    "weight_decay": 0.05,
    "optimizer": "adamw",
    "warmup": 0.1,
    "grad_accum": 1,
    "patience": 5,
    "seed": 0,
    "device": "auto",
    "out": "runs",
    "image_size": None,
    "label_smoothing": 0.0,
    "dropout": 0.0,
    "layer_decay": 0.75,
    "unfreeze_every": 1,
    "lora_rank": 8,
    "lora_alpha": 16.0,
    "lora_targets": None,
    "prompt_tokens": 10,
    "prompt_depth": "shallow",
    "shots": None,
    "num_workers": 0,
    "compile": False,
    "cache_features": "auto",
    "compare_scratch": False,
    "skip_bad": False,
}


class PluginTask:
    """The trainer's view of a plugin bound to its data."""

    def __init__(self, plugin: Plugin, data: TLData) -> None:
        self.plugin, self.data = plugin, data
        self.monitor, self.monitor_mode = plugin.monitor, plugin.monitor_mode

    def training_step(self, model: Any, batch: Any) -> Any:
        return self.plugin.training_step(model, batch)

    def predict_step(self, model: Any, batch: Any) -> Any:
        return self.plugin.predict_step(model, batch)

    def metrics(self, outputs: list[Any], split: str) -> dict[str, Any]:
        return self.plugin.metrics(outputs, self.data, split)


def train_config(options: dict[str, Any]) -> TrainConfig:
    fields = TrainConfig.__dataclass_fields__
    config = TrainConfig(**{k: options[k] for k in fields if options.get(k) is not None})
    if config.epochs < 1:
        raise ConfigError("--epochs must be at least 1", "--epochs", "e.g. --epochs 10")
    if config.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1", "--batch-size", "e.g. --batch-size 32")
    if not config.lr > 0:
        raise ConfigError("--lr must be positive", "--lr", "e.g. --lr 1e-3")
    return config


def resolve_options(plugin: Plugin, options: dict[str, Any]) -> dict[str, Any]:
    """Defaults < --config file < flags; resume reuses the run's own config."""
    resolved = {**DEFAULTS, **plugin.defaults}
    if options.get("resume"):
        saved = read_config(Path(options["resume"]) / "config.yaml")
        resolved.update(saved)
        resolved["resume"] = str(Path(options["resume"]))
        if options.get("device"):
            resolved["device"] = options["device"]
        return resolved
    if options.get("config"):
        resolved.update(read_config(Path(options["config"])))
    resolved.update({k: v for k, v in options.items() if v is not None})
    resolved["backbone"] = resolved.get("backbone") or plugin.default_backbone
    if not resolved.get("data"):
        raise ConfigError("no data given", "--data", "pass --data PATH (or data: in --config)")
    resolved["data"] = str(Path(resolved["data"]).expanduser().resolve())
    weights = str(resolved["weights"])
    if weights not in ("hub", "none"):
        resolved["weights"] = str(Path(weights).expanduser().resolve())
    resolved.pop("config", None)
    resolved.pop("verbose", None)
    resolved.pop("resume", None)
    return resolved


def build_and_load(
    plugin: Plugin,
    data: TLData,
    options: dict[str, Any],
    weights: str,
    reporter: ProgressReporter | None = None,
) -> tuple[Any, StrategyPlan | None, dict[str, Any]]:
    """The model as a run trains it: the plugin's model, the tensors of tl's ``weights`` file
    that fit, then the strategy's plan (None for prototypes, which has none), which may take
    saved tensors only it has a place for (prompt tokens)."""
    spec = BackboneSpec(name=options["backbone"], weights=weights, options=options)
    model = plugin.build_model(spec, data, options)
    loaded: dict[str, Any] = {"weights": weights}
    skipped_tensors: dict[str, Any] = {}
    tl_file = spec.tl_weights
    if tl_file is not None:
        summary = load_tl_weights(
            model, tl_file, adapt=lambda state, meta: plugin.adapt_weights(state, meta, model, data)
        )
        skipped_tensors = summary.pop("skipped_tensors")
        loaded.update({k: v for k, v in summary.items() if k != "meta"})
        loaded["skipped"] = len(summary["skipped"])
    plan = make_plan(model, options)
    if skipped_tensors:
        from .prompt_tuning import carry_prompt_tokens

        carried, note = carry_prompt_tokens(model, skipped_tensors, str(options["strategy"]))
        if carried:
            loaded["loaded"] += 1
            loaded["skipped"] -= 1
        if note:
            loaded["weights_notes"] = [note]
            if reporter is not None:
                reporter.log(note)
    return model, plan, loaded


def make_plan(model: Any, options: dict[str, Any]) -> StrategyPlan | None:
    """``options["strategy"]`` applied to ``model``; None for prototypes (no optimizer: its
    head is computed, not trained)."""
    if parse_strategy(options["strategy"])[0] == "prototypes":
        return None
    return build_plan(
        model,
        options["strategy"],
        lr=float(options["lr"]),
        weight_decay=float(options["weight_decay"]),
        layer_decay=float(options["layer_decay"]),
        unfreeze_every=int(options["unfreeze_every"]),
        options=options,
    )


def restore_run_model(
    plugin: Plugin, data: TLData, options: dict[str, Any], checkpoint: Path
) -> Any:
    """A finished run's model as it evaluated and exported it: built the way the run built
    it (`build_and_load` with the run's resolved ``options``), then every tensor of its
    ``checkpoint`` loaded (lora: the merged weights; prompt: with the tokens; prototypes:
    the prototype head). Raises `tl.core.errors.DataError` when the checkpoint does not fit."""
    from .checkpoints import load_weights_into
    from .prototypes import load_prototype_state

    model, plan, _ = build_and_load(plugin, data, options, "none")
    load_weights_into(
        model, checkpoint, plan.load_finished_state if plan is not None else load_prototype_state
    )
    return model.eval()


def train_one(
    plugin: Plugin,
    data: TLData,
    options: dict[str, Any],
    run_dir: Path,
    reporter: ProgressReporter,
    weights: str,
    resume: bool = False,
    tensorboard: bool = True,
) -> tuple[Any, FitResult, dict[str, Any], Trainer]:
    seed_everything(int(options["seed"]))
    model, plan, loaded = build_and_load(plugin, data, options, weights, reporter)
    trainable, total = parameter_counts(model)
    info = {
        **loaded,
        "strategy": options["strategy"],
        "trainable_params": trainable if plan is not None else 0,
        "total_params": total,
        "stages": plan.n_stages if plan is not None else 0,
    }
    trainer = Trainer(
        train_config(options),
        wrap_task(PluginTask(plugin, data), plugin, options, model),
        run_dir,
        reporter,
        weights_meta=lambda: {
            "plugin": plugin.name,
            "backbone": options["backbone"],
            "labels": data.labels,
            "weights_meta": plugin.weights_metadata(model, data),
        },
        tensorboard=tensorboard,
    )
    if plan is None:
        from .prototypes import fit_prototypes

        result = fit_prototypes(
            model, data, trainer, plugin.split_batch, options.get("shots"), int(options["seed"])
        )
        return model, result, info, trainer
    result = trainer.fit(model, plan, data.train, data.val, data.collate, resume=resume)
    plan.finish(model)  # lora: merge the adapters before evaluation and export
    return model, result, info, trainer


def evaluate_model(
    plugin: Plugin, data: TLData, model: Any, trainer: Trainer
) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    outputs = {
        "val": trainer.collect(model, data.val, data.collate),
        "test": trainer.collect(model, data.test, data.collate),
    }
    metrics = dict(plugin.metrics(outputs["test"], data, "test"))
    extra = plugin.finalize(model, data, outputs) or {}
    metrics.update(extra.get("metrics", {}))
    return metrics, extra.get("export", {}), outputs["test"]


def run_plugin(
    plugin: Plugin, options: dict[str, Any], reporter: ProgressReporter | None = None
) -> Path:
    """The whole `tl run`; returns the run directory."""
    resume_dir = options.get("resume")
    options = resolve_options(plugin, options)
    owns_group = not dist.is_distributed() and dist.setup(str(options.get("device") or "auto"))
    if resume_dir:
        run_dir = Path(resume_dir)
        if not (run_dir / "config.yaml").exists():
            raise ConfigError(
                "not a tl run directory", run_dir, "pass the folder printed by `tl run`"
            )
    elif dist.is_main():
        run_dir = make_run_dir(Path(options["out"]), plugin.name)
        write_config(run_dir, options)
    run_dir = Path(dist.broadcast(str(run_dir) if dist.is_main() else None))
    if not dist.is_main():  # rank 0 logs and writes; the other ranks only train
        return _train_only(plugin, options, run_dir, bool(resume_dir), owns_group)
    reporter = reporter or ProgressReporter()
    reporter.log_file = run_dir / "log.txt"
    if dist.is_distributed():
        reporter.log(f"distributed: {dist.world_size()} processes")
    reporter.log(f"run directory {run_dir}")
    started = time.time()

    seed_everything(int(options["seed"]))
    data = plugin.load(Path(options["data"]), options)
    write_text_atomic(run_dir / "splits.csv", data.splits.to_csv(index=False))
    counts = {f"n_{s}": len(getattr(data, s)) for s in ("train", "val", "test")}
    reporter.log(f"data: {counts['n_train']} train, {counts['n_val']} val, {counts['n_test']} test")

    model, fit, train_info, trainer = train_one(
        plugin, data, options, run_dir, reporter, options["weights"], resume=bool(resume_dir)
    )
    write_text_atomic(run_dir / "history.csv", pd.DataFrame(fit.history).to_csv(index=False))
    metrics, export_extra, test_outputs = evaluate_model(plugin, data, model, trainer)

    metrics_json: dict[str, Any] = {
        "plugin": plugin.name,
        "task": data.task or plugin.task,
        "backbone": options["backbone"],
        "weights": options["weights"],
        "strategy": options["strategy"],
        **counts,
        "train_seconds": round(fit.seconds, 2),
        "epochs_run": len(fit.history),
        "best_epoch": fit.best_epoch,
        "monitor": plugin.monitor,
        "trainable_params": train_info["trainable_params"],
        "total_params": train_info["total_params"],
        **metrics,
    }

    scratch_history = None
    if options.get("compare_scratch"):
        reporter.log("training the same model from random init (--compare-scratch)")
        scratch_dir = run_dir / "scratch"
        scratch_dir.mkdir(exist_ok=True)
        s_model, s_fit, _, s_trainer = train_one(
            plugin,
            data,
            options,
            scratch_dir,
            reporter,
            "none",
            resume=bool(resume_dir),
            tensorboard=False,
        )
        s_metrics, _, _ = evaluate_model(plugin, data, s_model, s_trainer)
        scratch_history = s_fit.history
        write_text_atomic(
            scratch_dir / "history.csv", pd.DataFrame(s_fit.history).to_csv(index=False)
        )
        metrics_json["scratch"] = {"train_seconds": round(s_fit.seconds, 2), **s_metrics}
        metrics_json["transfer_gain"] = {
            key: metrics[key] - s_metrics[key]
            for key in metrics
            if isinstance(metrics.get(key), float) and isinstance(s_metrics.get(key), float)
        }
        del s_model

    if options.get("adversarial"):
        metrics_json["adversarial"] = compare_plain(
            plugin, data, model, options, run_dir, reporter, trainer.device
        )

    metrics_json["onnx_parity"], _ = export_run(
        plugin,
        model,
        data,
        test_outputs,
        export_extra,
        run_dir,
        reporter,
        {"backbone": options["backbone"], "strategy": options["strategy"]},
    )
    write_json_atomic(run_dir / "metrics.json", metrics_json)

    sections = list(plugin.report(run_dir, metrics_json, data, model) or [])
    sections += report_sections(metrics_json)
    write_report(
        run_dir,
        plugin,
        options,
        metrics_json,
        fit.history,
        data,
        train_info,
        sections,
        scratch_history,
    )
    write_manifest(
        run_dir,
        plugin,
        options,
        {
            "data": data_fingerprint(Path(options["data"])),
            "wall_seconds": round(time.time() - started, 2),
        },
    )
    reporter.log(_summary_line(plugin, metrics_json))
    if owns_group:
        dist.cleanup()
    return run_dir


def _train_only(
    plugin: Plugin, options: dict[str, Any], run_dir: Path, resume: bool, owns_group: bool
) -> Path:
    """A non-zero rank's part of `run_plugin`: the same training steps, nothing written."""
    seed_everything(int(options["seed"]))
    data = plugin.load(Path(options["data"]), options)
    quiet = ProgressReporter(enabled=False)
    train_one(plugin, data, options, run_dir, quiet, options["weights"], resume, False)
    if options.get("compare_scratch"):
        train_one(plugin, data, options, run_dir / "scratch", quiet, "none", resume, False)
    if owns_group:
        dist.cleanup()
    return run_dir


def export_run(
    plugin: Plugin,
    model: Any,
    data: TLData,
    test_outputs: list[Any],
    export_extra: dict[str, Any],
    run_dir: Path,
    reporter: ProgressReporter,
    meta: dict[str, Any],
) -> tuple[dict[str, Any], ExportSpec]:
    """Write test_predictions.csv and model.onnx (tl metadata: core fields, ``meta``, the
    plugin's own); return the parity figures of the export check and the exported spec."""
    predictions = plugin.predictions(test_outputs, data, export_extra)
    if predictions is not None:
        write_text_atomic(run_dir / "test_predictions.csv", predictions.to_csv(index=False))
    reporter.log("exporting ONNX and checking parity with PyTorch")
    spec = plugin.export_spec(model.cpu().eval(), data, {**export_extra, "run_dir": run_dir})
    core_meta = {
        "plugin": plugin.name,
        "plugin_version": plugin.version,
        "api_version": plugin.api_version,
        "task": data.task or plugin.task,
        **meta,
        "labels": data.labels,
        **spec.metadata,
    }
    parity = export_onnx(spec, run_dir / "model.onnx", core_meta)
    agreement = "n/a" if parity["agreement"] is None else f"{parity['agreement']:.3f}"
    reporter.log(f"ONNX parity: max abs diff {parity['max_abs_diff']:.2e}, agreement {agreement}")
    return parity, spec


def _summary_line(plugin: Plugin, metrics: dict[str, Any]) -> str:
    keys = [plugin.monitor] + [
        k
        for k in ("accuracy", "macro_f1", "auroc", "average_precision", "ndcg@10", "map50")
        if k != plugin.monitor
    ]
    shown = [f"{k}={metrics[k]:.4f}" for k in keys if isinstance(metrics.get(k), float)]
    return "test: " + " ".join(shown)


def pretrain_plugin(
    plugin: Plugin, options: dict[str, Any], reporter: ProgressReporter | None = None
) -> Path:
    """`tl pretrain`: train the plugin's `PretrainTask` and write ``backbone.safetensors``."""
    from .checkpoints import save_backbone

    options = resolve_options(plugin, options)
    run_dir = make_run_dir(Path(options["out"]), f"pretrain-{plugin.name}")
    write_config(run_dir, options)
    reporter = reporter or ProgressReporter()
    reporter.log_file = run_dir / "log.txt"
    seed_everything(int(options["seed"]))
    spec = BackboneSpec(name=options["backbone"], weights=options["weights"], options=options)
    task = plugin.pretrain_task(spec, Path(options["data"]), options)
    if spec.tl_weights is not None:
        load_tl_weights(task.model, spec.tl_weights)
    task.training_step = task.training_step or plugin.training_step
    task.predict_step = task.predict_step or (
        lambda model, batch: {"loss": task.training_step(model, batch)}
    )
    metrics_fn = task.metrics or (lambda outputs: {})
    bound = _PretrainAdapter(task, metrics_fn)
    plan = build_plan(task.model, "full", float(options["lr"]), float(options["weight_decay"]))
    trainer = Trainer(
        train_config({**options, **task.train_overrides}),
        bound,
        run_dir,
        reporter,
        weights_meta=lambda: {
            "plugin": plugin.name,
            "backbone": options["backbone"],
            "weights_meta": task.metadata,
        },
    )
    val = task.val if task.val is not None and len(task.val) else task.train
    fit = trainer.fit(task.model, plan, task.train, val, task.collate)
    write_text_atomic(run_dir / "history.csv", pd.DataFrame(fit.history).to_csv(index=False))
    meta = {
        "plugin": plugin.name,
        "backbone": options["backbone"],
        "method": task.method,
        "weights_meta": task.metadata,
    }
    save_backbone(task.model, run_dir / "backbone.safetensors", meta)
    write_json_atomic(
        run_dir / "pretrain.json",
        {
            **meta,
            "train_seconds": round(fit.seconds, 2),
            "epochs_run": len(fit.history),
            "history": fit.history,
            **task.info,
        },
    )
    write_manifest(run_dir, plugin, options, {"data": data_fingerprint(Path(options["data"]))})
    return run_dir


class _PretrainAdapter:
    def __init__(self, task: Any, metrics_fn: Any) -> None:
        self.task = task
        self.metrics_fn = metrics_fn
        self.monitor, self.monitor_mode = task.monitor, task.monitor_mode

    def training_step(self, model: Any, batch: Any) -> Any:
        return self.task.training_step(model, batch)

    def predict_step(self, model: Any, batch: Any) -> Any:
        return self.task.predict_step(model, batch)

    def metrics(self, outputs: list[Any], split: str) -> dict[str, Any]:
        return dict(self.metrics_fn(outputs))


__all__ = ["TLError", "pretrain_plugin", "run_plugin"]
