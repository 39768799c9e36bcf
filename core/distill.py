"""`tl distill RUN_DIR --student NAME`: knowledge distillation of a finished image
classification run into a smaller backbone for edge deployment.

The student sees the teacher's data exactly: the plugin loads the teacher's data path with
the teacher's resolved options, and the splits must equal the teacher's ``splits.csv``
(otherwise the comparison would be meaningless and an error says so). Loss (Hinton et al.):

    alpha · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 - alpha) · plugin loss

(multi-label: sigmoid targets and binary cross-entropy instead of the softmax KL). The
teacher runs in eval mode on the same augmented batch as the student. It is rebuilt the way
its run built it (`tl.core.run.restore_run_model`: any strategy — a lora run's merged
weights, a prompt run's tokens, a prototypes run's head) and evaluated again on the test
split; the report shows those metrics, which equal the run's own. The result is an
ordinary run directory (``tl predict`` / ``tl evaluate`` / ``--weights`` work on it) whose
report compares teacher and student: metrics, parameters, ONNX size, onnxruntime CPU latency.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .backbones import BackboneSpec, load_tl_weights
from .errors import ConfigError, DataError
from .fileio import write_json_atomic, write_text_atomic
from .plugin import ReportSection
from .progress import ProgressReporter
from .report import write_report
from .rundir import (
    data_fingerprint,
    make_run_dir,
    read_config,
    run_status,
    write_config,
    write_manifest,
)
from .seeding import seed_everything
from .strategies import build_plan, parameter_counts
from .task import Task, plugin_task
from .tracking import track_run
from .trainer import Trainer

#: flags of `tl distill` that override the teacher's options when given
TRAIN_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "patience", "seed", "device")


def kd_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, multilabel: bool
) -> torch.Tensor:
    """Soft-target loss × T² (so its gradients keep their size as T changes)."""
    t = float(temperature)
    if multilabel:
        soft = torch.sigmoid(teacher / t)
        loss = F.binary_cross_entropy_with_logits(student / t, soft)
    else:
        loss = F.kl_div(
            F.log_softmax(student / t, dim=1), F.softmax(teacher / t, dim=1), reduction="batchmean"
        )
    return loss * t * t


def distill_task(
    plugin: Any, data: Any, teacher: nn.Module, alpha: float, temperature: float
) -> Task:
    """The plugin's task (validation, metrics, monitoring) with the distillation loss in
    training; ``teacher`` is put in eval mode and frozen."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def training_step(model: nn.Module, batch: Any) -> torch.Tensor:
        inputs, targets = plugin.split_batch(batch)
        if next(teacher.parameters()).device != inputs.device:
            teacher.to(inputs.device)
        with torch.no_grad():
            soft = teacher(inputs).float()
        logits = model(inputs)
        multilabel = targets.ndim > 1
        distill = kd_loss(logits.float(), soft, temperature, multilabel)
        if alpha >= 1:
            return distill
        return alpha * distill + (1 - alpha) * plugin.model_loss(model)(logits, targets)

    return dataclasses.replace(plugin_task(plugin, data), training_step=training_step)


def _teacher_files(run_dir: Path) -> dict[str, Path]:
    files = {
        "config": run_dir / "config.yaml",
        "metrics": run_dir / "metrics.json",
        "splits": run_dir / "splits.csv",
        "onnx": run_dir / "model.onnx",
        "weights": run_dir / "checkpoints" / "best.safetensors",
    }
    if not run_dir.is_dir() or not all(f.exists() for f in files.values()):
        missing = [f.name for f in files.values() if not f.exists()]
        raise ConfigError(
            f"not a finished tl run directory (missing {', '.join(missing)})",
            run_dir,
            "pass a folder printed by `tl run` after it finished",
        )
    return files


def onnx_latency(path: Path, feeds: dict[str, np.ndarray], repeats: int = 30) -> dict[str, float]:
    """onnxruntime CPU latency for ``feeds`` (median / p90 in ms after warm-up)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(3):
        session.run(None, feeds)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "median_ms": round(float(np.median(times)), 3),
        "p90_ms": round(float(np.percentile(times, 90)), 3),
    }


def _check_classifier(model: nn.Module, role: str) -> None:
    from .models import ClassifierModel

    if not isinstance(model, ClassifierModel):
        raise ConfigError(
            f"tl distill works on image classification runs; the {role} is a {type(model).__name__}",
            "RUN_DIR",
            "distill a run of an image classification plugin (e.g. medical)",
        )


def distill_run(
    teacher_dir: Path,
    flags: dict[str, Any],
    reporter: ProgressReporter | None = None,
    plugin: Any = None,
) -> Path:
    """The whole `tl distill`; returns the new run directory. ``plugin``: the teacher's
    (default: the installed plugin its metrics.json names)."""
    from .config import resolve_config
    from .registry import load_plugin

    teacher_dir = Path(teacher_dir).expanduser().resolve()
    files = _teacher_files(teacher_dir)
    teacher_metrics = json.loads(files["metrics"].read_text())
    plugin = plugin or load_plugin(teacher_metrics["plugin"])
    teacher_cfg = resolve_config(plugin, {}, None, "run", saved=read_config(files["config"]))
    student_name = flags.get("student")
    if not student_name:
        raise ConfigError("no student backbone", "--student", "e.g. --student resnet10t")
    alpha = float(flags["alpha"] if flags.get("alpha") is not None else 0.5)
    temperature = float(flags["temperature"] if flags.get("temperature") is not None else 4.0)
    if not 0 <= alpha <= 1:
        raise ConfigError("--alpha must be in [0, 1]", "--alpha", "e.g. --alpha 0.5")
    if not temperature > 0:
        raise ConfigError("--temperature must be positive", "--temperature", "e.g. 4")

    weights = str(flags.get("weights") or "none")
    if weights not in ("hub", "none"):
        weights = str(Path(weights).expanduser().resolve())
    changes: dict[str, Any] = {
        "backbone": student_name,
        "weights": weights,
        "strategy": "full",
        "compare_scratch": False,
        "adversarial": None,
        "out": str(flags.get("out") or teacher_cfg["out"]),
        "track": flags.get("track") or teacher_cfg.get("track", "none"),
        **{k: flags[k] for k in TRAIN_KEYS if flags.get(k) is not None},
    }
    if flags.get("data"):
        changes["data"] = str(Path(flags["data"]).expanduser().resolve())
    options = teacher_cfg.replace(**changes)
    if options["track"] == "mlflow":  # before any data loads or a run directory exists
        from .tracking import require_mlflow

        require_mlflow(load=False)
    distill_info = {
        "teacher_run": str(teacher_dir),
        "teacher_backbone": teacher_cfg["backbone"],
        "alpha": alpha,
        "temperature": temperature,
    }

    seed_everything(int(teacher_cfg["seed"]))
    data = plugin.load(Path(options["data"]), teacher_cfg)
    _check_same_splits(data.splits, files["splits"])
    run_dir = make_run_dir(Path(options["out"]), f"{plugin.name}-distill")
    write_config(run_dir, plugin, options)
    reporter = reporter or ProgressReporter()
    reporter.log_file = run_dir / "log.txt"
    reporter.log(f"run directory {run_dir}")
    reporter.log(f"distilling {teacher_cfg['backbone']} ({teacher_dir.name}) into {student_name}")
    with run_status(run_dir, plugin, options), track_run(plugin, options, run_dir, reporter,
                                                         "distill") as tracked:  # fmt: skip
        return _distill(plugin, data, teacher_cfg, options, files, teacher_metrics, distill_info,
                        run_dir, reporter, tracked)  # fmt: skip


def _distill(plugin, data, teacher_cfg, options, files, teacher_metrics, distill_info, run_dir,
             reporter, callbacks=()) -> Path:  # fmt: skip
    from .run import Variant, evaluate_variant, export_run
    from .run_config import train_config
    from .trainer import FitResult

    teacher_dir = Path(distill_info["teacher_run"])
    student_name = options["backbone"]
    alpha, temperature = distill_info["alpha"], distill_info["temperature"]
    write_text_atomic(run_dir / "splits.csv", data.splits.to_csv(index=False))
    counts = {f"n_{s}": len(getattr(data, s)) for s in ("train", "val", "test")}

    teacher = _restore_teacher(plugin, data, teacher_cfg, files["weights"])

    seed_everything(int(options["seed"]))
    spec = BackboneSpec(name=student_name, weights=options["weights"], options=options)
    student = plugin.build_model(spec, data, options)
    _check_classifier(student, "student")
    student.supports_feature_cache = False  # the teacher needs pixels, not cached features
    loaded: dict[str, Any] = {}
    if spec.tl_weights is not None:
        summary = load_tl_weights(student, spec.tl_weights)
        loaded = {"source": summary["source"], "loaded": summary["loaded"]}
        loaded["skipped"] = len(summary["skipped"])
    plan = build_plan(student, options)
    trainer = Trainer(
        train_config(options),
        distill_task(plugin, data, teacher, alpha, temperature),
        run_dir,
        reporter,
        weights_meta=lambda: {
            "plugin": plugin.name,
            "backbone": student_name,
            "labels": data.labels,
            "weights_meta": plugin.weights_metadata(student, data),
        },
        callbacks=callbacks,
    )
    fit = trainer.fit(student, plan, data.train, data.val, data.collate)
    write_text_atomic(run_dir / "history.csv", pd.DataFrame(fit.history).to_csv(index=False))
    result = evaluate_variant(plugin, data, Variant("student", options, student, fit, {}, trainer))
    metrics = result.metrics
    # the teacher's metrics as rebuilt here: equal to its run's own when the rebuild is right
    teacher_variant = Variant("teacher", teacher_cfg, trainer.prepare(teacher), FitResult(), {},
                              trainer)  # fmt: skip
    teacher_now = evaluate_variant(plugin, data, teacher_variant).metrics
    teacher_matches = _check_teacher_metrics(teacher_now, teacher_metrics, reporter)
    trainable, total = parameter_counts(student)
    teacher_params = sum(p.numel() for p in teacher.parameters())

    metrics_json: dict[str, Any] = {
        "plugin": plugin.name,
        "task": data.task or plugin.task,
        "backbone": student_name,
        "weights": options["weights"],
        "strategy": "distill",
        **counts,
        "train_seconds": round(fit.seconds, 2),
        "epochs_run": len(fit.history),
        "best_epoch": fit.best_epoch,
        "monitor": plugin.monitor,
        "trainable_params": trainable,
        "total_params": total,
        **metrics,
    }
    metrics_json["onnx_parity"], export = export_run(
        plugin,
        student,
        data,
        result,
        run_dir,
        reporter,
        {
            "backbone": student_name,
            "strategy": "distill",
            "distilled_from": teacher_cfg["backbone"],
        },
    )

    reporter.log("measuring onnxruntime CPU latency (batch of 1) of teacher and student")
    first = export.batches[0]
    feeds = {name: np.ascontiguousarray(first[name][:1]) for name in export.input_names}
    headline = [k for k in metrics if isinstance(metrics.get(k), float)]
    teacher_side = {
        "run": str(teacher_dir),
        "backbone": teacher_cfg["backbone"],
        "params": teacher_params,
        "onnx_bytes": files["onnx"].stat().st_size,
        "latency_batch1": onnx_latency(files["onnx"], feeds),
        "strategy": teacher_cfg.get("strategy"),
        "metrics_match_run": teacher_matches,
        **{k: teacher_now[k] for k in headline if isinstance(teacher_now.get(k), float)},
    }
    student_side = {
        "backbone": student_name,
        "params": total,
        "onnx_bytes": (run_dir / "model.onnx").stat().st_size,
        "latency_batch1": onnx_latency(run_dir / "model.onnx", feeds),
        **{k: metrics[k] for k in headline},
    }
    metrics_json["distillation"] = {
        "alpha": alpha,
        "temperature": temperature,
        "teacher": teacher_side,
        "student": student_side,
        "param_ratio": round(total / max(1, teacher_params), 4),
        "onnx_size_ratio": round(
            student_side["onnx_bytes"] / max(1, teacher_side["onnx_bytes"]), 4
        ),
        "speedup": round(
            teacher_side["latency_batch1"]["median_ms"]
            / max(1e-9, student_side["latency_batch1"]["median_ms"]),
            3,
        ),
    }
    write_json_atomic(run_dir / "metrics.json", metrics_json)

    sections = [_comparison_section(metrics_json["distillation"], headline)]
    sections += plugin.report(run_dir, metrics_json, data, student, result.fitted)
    train_info = {"trainable_params": trainable, "total_params": total, **loaded}
    report = write_report(
        run_dir, plugin, options, metrics_json, fit.history, data, train_info, sections
    )
    text = report.read_text(encoding="utf-8").split("\n", 1)
    title = f"# tl distill — {plugin.name}: {teacher_cfg['backbone']} → {student_name}"
    write_text_atomic(report, title + "\n" + text[1])
    write_manifest(
        run_dir,
        plugin,
        options,
        {"data": data_fingerprint(Path(options["data"])), "distill": distill_info},
    )
    d = metrics_json["distillation"]
    reporter.log(
        f"student {plugin.monitor}={metrics.get(plugin.monitor, float('nan')):.4f} "
        f"(teacher {teacher_side.get(plugin.monitor, float('nan')):.4f}); "
        f"{d['param_ratio']:.0%} of the parameters, {d['speedup']:.2f}× faster on CPU"
    )
    return run_dir


def _restore_teacher(plugin: Any, data: Any, config: Any, weights: Path) -> nn.Module:
    """The teacher as its run evaluated and exported it, rebuilt by the run's own path."""
    from .run import restore_run_model

    try:
        teacher = restore_run_model(plugin, data, config, weights)
    except DataError as exc:
        raise ConfigError(
            f"the teacher's checkpoint does not fit the model its config.yaml describes "
            f"(strategy {config.get('strategy')}: {exc.what})",
            weights,
            "distill an unchanged run directory, made by this version of tl",
        ) from exc
    _check_classifier(teacher, "teacher")
    return teacher


def _check_teacher_metrics(
    now: dict[str, Any], recorded: dict[str, Any], reporter: ProgressReporter
) -> bool:
    """Whether the rebuilt teacher's test metrics are its run's (a warning when not)."""
    differ = [
        k
        for k, v in now.items()
        if isinstance(v, float)
        and isinstance(recorded.get(k), float)
        and not np.isclose(v, recorded[k], rtol=1e-5, atol=1e-6, equal_nan=True)
    ]
    if differ:
        shown = ", ".join(f"{k} {now[k]:.4f} (run: {recorded[k]:.4f})" for k in differ[:3])
        reporter.log(f"warning: the rebuilt teacher's test metrics differ from its run's: {shown}")
    return not differ


def _check_same_splits(splits: pd.DataFrame, teacher_splits: Path) -> None:
    theirs = pd.read_csv(teacher_splits, dtype=str, keep_default_na=False)
    ours = splits.astype(str)
    same = (
        len(theirs) == len(ours)
        and list(theirs["item"]) == list(ours["item"])
        and list(theirs["split"]) == list(ours["split"])
    )
    if not same:
        raise DataError(
            "the data no longer splits as in the teacher's run (splits.csv differs)",
            teacher_splits,
            "distill on the teacher's unchanged data (or pass --data to where it lives now)",
        )


def _comparison_section(d: dict[str, Any], headline: list[str]) -> ReportSection:
    t, s = d["teacher"], d["student"]

    def mb(n: int) -> str:
        return f"{n / 1e6:.2f} MB"

    rows = [
        f"Knowledge distillation: α = {d['alpha']} on the teacher's soft targets at "
        f"T = {d['temperature']} (KL × T²), {1 - d['alpha']:.2f} on the labels. Same splits "
        "as the teacher's run; latency: onnxruntime, CPU provider, one image, median of 30.",
        "",
        "| | teacher | student |",
        "|---|---:|---:|",
        f"| backbone | {t['backbone']} | {s['backbone']} |",
        f"| parameters | {t['params']:,} | {s['params']:,} ({d['param_ratio']:.0%}) |",
        f"| model.onnx | {mb(t['onnx_bytes'])} | {mb(s['onnx_bytes'])} |",
        f"| CPU latency (median / p90) | {t['latency_batch1']['median_ms']:.2f} / "
        f"{t['latency_batch1']['p90_ms']:.2f} ms | {s['latency_batch1']['median_ms']:.2f} / "
        f"{s['latency_batch1']['p90_ms']:.2f} ms ({d['speedup']:.2f}×) |",
    ]
    for key in headline:
        if key in t and key in s:
            rows.append(f"| {key} | {t[key]:.4f} | {s[key]:.4f} |")
    return ReportSection("Teacher vs student", "\n".join(rows))


__all__ = ["distill_run", "distill_task", "kd_loss", "onnx_latency"]
