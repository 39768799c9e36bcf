"""The fraud plugin: what `tl run/pretrain/predict/evaluate/demo fraud` call.

Importing this module pulls in no torch; the training methods import it lazily.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tl.core import POSITIVE, ConfigError, ExportSpec, FiniteRange, Plugin, ReportSection, TLData

from . import __version__
from .metrics import ThresholdRule, choose_threshold, fraud_metrics
from .prepare import PreparedTable, frame_split_table, prepare

if TYPE_CHECKING:  # pragma: no cover
    import click
    import pandas as pd

BACKBONES = ("ft_transformer",)
EXPORT_BATCH_ROWS = 2048
EXPORT_MAX_BATCHES = 16
SPLIT_FRACTION = FiniteRange(0, 1, min_open=True, max_open=True)
VAL_KEYS = ("average_precision", "roc_auc", "recall_at_1pct_fpr", "threshold")


@dataclass
class FraudData(TLData):
    """`TLData` plus what later steps of the run need (schema, threshold, baseline …)."""

    prepared: PreparedTable | None = None
    rule: ThresholdRule = field(default_factory=ThresholdRule)
    seed: int = 0
    arch: Any = None
    threshold: float | None = None
    baseline: dict[str, Any] | None = None
    test_scores: np.ndarray | None = None
    transfer: dict[str, Any] | None = None


def _options() -> list[click.Option]:
    import click

    return [
        click.Option(["--target"], help="0/1, boolean or two-valued fraud label column."),
        click.Option(["--positive"], help="The target value that means fraud (for string labels)."),
        click.Option(
            ["--time-column"], help="Timestamp column: out-of-time split + hour/weekday features."
        ),
        click.Option(
            ["--group-column"], help="Entity column (e.g. card id) kept within one split."
        ),
        click.Option(
            ["--drop"], multiple=True, help="Columns to leave out (ids); kept in predictions."
        ),
        click.Option(
            ["--categorical"], multiple=True, help="Force these columns to be categorical."
        ),
        click.Option(["--numeric"], multiple=True, help="Force these columns to be numeric."),
        click.Option(
            ["--d-token"],
            type=click.IntRange(min=1),
            default=None,
            help="Token width (default 64).",
        ),
        click.Option(
            ["--n-blocks"],
            type=click.IntRange(min=1),
            default=None,
            help="Transformer blocks (default 2).",
        ),
        click.Option(
            ["--n-heads"],
            type=click.IntRange(min=1),
            default=None,
            help="Attention heads (default 4).",
        ),
        click.Option(["--val-fraction"], type=SPLIT_FRACTION, default=0.15, show_default=True),
    ]


class FraudPlugin(Plugin):
    name = "fraud"
    version = __version__
    description = (
        "Transaction fraud: FT-Transformer that transfers between tables, vs gradient boosting"
    )
    task = "binary-fraud"
    default_backbone = "ft_transformer"
    monitor = "average_precision"
    monitor_mode = "max"

    # ----------------------------------------------------------------- CLI
    def cli_options(self) -> list[click.Option]:
        import click

        return [
            *_options(),
            click.Option(["--test-fraction"], type=SPLIT_FRACTION, default=0.15, show_default=True),
            click.Option(["--loss"], type=click.Choice(["weighted", "focal", "plain"]), default="weighted",
                         show_default=True, help="Class-weighted BCE, focal loss, or unweighted."),
            click.Option(["--cost-fp"], type=POSITIVE, default=1.0, show_default=True,
                         help="Cost of a false alert (threshold choice)."),
            click.Option(["--cost-fn"], type=POSITIVE, default=10.0, show_default=True,
                         help="Cost of a missed fraud (threshold choice)."),
            click.Option(["--target-recall"], type=FiniteRange(0, 1, min_open=True), default=None,
                         help="Pick the threshold reaching this recall on validation instead of by cost."),
        ]  # fmt: skip

    def predict_options(self) -> list[click.Option]:
        import click

        return [
            click.Option(
                ["--target"], help="Label column for `tl evaluate` (default: the training one)."
            ),
            click.Option(["--positive"], help="The target value that means fraud."),
        ]

    def pretrain_options(self) -> list[click.Option]:
        import click

        return [
            *_options(),
            click.Option(["--ssl"], type=click.Choice(["mask", "scarf", "both"]), default="mask",
                         show_default=True, help="Self-supervised objective (ignored with --target)."),
        ]  # fmt: skip

    # ---------------------------------------------------------------- data
    def demo(self, out_dir: Path, size: str = "small", seed: int = 0) -> Path:
        from .demo import write_demo

        return write_demo(Path(out_dir), size, seed)

    def load(self, path: Path, options: dict[str, Any]) -> FraudData:
        from .data import TableDataset, collate_rows

        prepared = prepare(Path(path), options, labelled=True)
        datasets = [TableDataset(*prepared.part(name)) for name in ("train", "val", "test")]
        return FraudData(
            *datasets,
            splits=frame_split_table(prepared),
            labels=["legit", "fraud"],
            task=self.task,
            info=prepared.info,
            collate=collate_rows,
            prepared=prepared,
            rule=_rule(options),
            seed=int(options.get("seed") or 0),
        )

    # --------------------------------------------------------------- model
    def build_model(self, spec: Any, data: FraudData, options: dict[str, Any]) -> Any:
        from .loss import FraudLoss, balanced_pos_weight
        from .model import FraudModel

        _check_backbone(spec.name)
        data.arch = _architecture(spec, options)
        model = FraudModel(data.prepared.schema, data.arch, dropout=_dropout(options))
        train_labels = data.prepared.part("train")[2]
        model.loss = FraudLoss(options.get("loss") or "weighted", balanced_pos_weight(train_labels))
        return model

    def training_step(self, model: Any, batch: dict[str, Any]) -> Any:
        return model.loss(model(batch["numeric"], batch["categorical"]), batch["target"])

    def predict_step(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        logits = model(batch["numeric"], batch["categorical"])
        return {
            "score": logits.float().sigmoid(),
            "target": batch["target"],
            "loss": model.loss(logits, batch["target"]),
        }

    def metrics(self, outputs: list[Any], data: FraudData, split: str) -> dict[str, Any]:
        """Validation: threshold chosen on the split itself (for monitoring only). Test: at
        the validation threshold once `finalize` has set it (the core's final test metrics
        come from `finalize`, which also adds the baseline)."""
        scores, targets = _gather(outputs)
        if split == "test" and data.threshold is not None:
            return fraud_metrics(scores, targets, data.threshold)
        result = fraud_metrics(scores, targets, choose_threshold(scores, targets, data.rule))
        return {key: result[key] for key in VAL_KEYS}

    def finalize(
        self, model: Any, data: FraudData, outputs: dict[str, list[Any]]
    ) -> dict[str, Any]:
        """Threshold from validation; test metrics at it, side by side with the baseline."""
        scores, targets = _gather(outputs["val"])
        data.threshold = choose_threshold(scores, targets, data.rule)
        test_scores, test_targets = _gather(outputs["test"])
        data.test_scores = test_scores
        metrics = fraud_metrics(test_scores, test_targets, data.threshold)
        metrics["threshold_rule"] = data.rule.describe()
        metrics["baseline"] = self._baseline(data)["metrics"]
        if data.transfer:
            metrics["transfer"] = data.transfer
        return {"metrics": metrics, "export": {"threshold": data.threshold}}

    def predictions(
        self, outputs: list[Any], data: FraudData, extra: dict[str, Any]
    ) -> pd.DataFrame:
        import pandas as pd

        scores, targets = _gather(outputs)
        rows = data.prepared.rows[data.prepared.split == "test"]
        threshold = data.threshold if data.threshold is not None else 0.5
        return pd.DataFrame(
            {
                "row": rows,
                "target": targets,
                "fraud_probability": scores,
                "alert": scores >= threshold,
            }
        )

    def _baseline(self, data: FraudData) -> dict[str, Any]:
        if data.baseline is None:
            from .baseline import run_baseline

            data.baseline = run_baseline(data.prepared, data.rule, data.seed)
        return data.baseline

    # ------------------------------------------------------------- weights
    def weights_metadata(self, model: Any, data: FraudData) -> dict[str, Any]:
        return {
            "plugin": self.name,
            "schema": data.prepared.schema.to_dict(),
            "architecture": data.arch.to_dict() if data.arch else {},
            "target": data.info.get("target"),
            "positive_label": data.info.get("positive_label"),
        }

    def adapt_weights(
        self, state_dict: dict[str, Any], source_meta: dict[str, Any], model: Any, data: FraudData
    ) -> dict[str, Any]:
        from .schema import TableSchema
        from .transfer import adapt_state_dict

        meta = _fraud_meta(source_meta)
        if "schema" not in meta:
            return state_dict
        source = TableSchema.from_dict(meta["schema"])
        state, data.transfer = adapt_state_dict(
            state_dict, source, data.prepared.schema, model.state_dict()
        )
        data.info["transfer"] = data.transfer
        return state

    # -------------------------------------------------------------- export
    def export_spec(self, model: Any, data: FraudData, extra: dict[str, Any]) -> ExportSpec:
        from .model import ProbabilityModel

        numeric, categorical, _ = data.prepared.part("test")
        step = EXPORT_BATCH_ROWS
        batches = [
            {"numeric": numeric[i : i + step], "categorical": categorical[i : i + step]}
            for i in range(0, len(numeric), step)
        ][:EXPORT_MAX_BATCHES]
        threshold = extra.get("threshold", data.threshold)
        return ExportSpec(
            module=ProbabilityModel(model).cpu().eval(),
            batches=batches,
            input_names=["numeric", "categorical"],
            output_names=["probability"],
            dynamic_axes={
                "numeric": {0: "batch"},
                "categorical": {0: "batch"},
                "probability": {0: "batch"},
            },
            metadata=self._export_metadata(data, threshold),
            compare=["probability"],
            agreement_output="probability",
            tolerance=1e-4,
        )

    def _export_metadata(self, data: FraudData, threshold: float | None) -> dict[str, Any]:
        schema = data.prepared.schema
        return {
            "labels": ["legit", "fraud"],
            "threshold": threshold if threshold is not None else 0.5,
            "threshold_rule": data.rule.describe(),
            "target": data.info.get("target"),
            "positive_label": data.info.get("positive_label"),
            "time_column": data.info.get("time_column"),
            "schema": schema.to_dict(),
            "inputs": {
                "numeric": {"dtype": "float32", "columns": schema.numeric_names, "missing": "NaN"},
                "categorical": {
                    "dtype": "int64",
                    "columns": schema.categorical_names,
                    "codes": "1-based index into the column's vocab; 0 = unknown or missing",
                },
            },
            "preprocessing": "in graph: log1p for skewed columns, median/IQR scaling, clipping, "
            "missing → learned token; outside: category → code via schema vocab, datetime → hour/weekday",
            "output": "probability of fraud",
        }

    # ------------------------------------------------------------- runtime (no torch)
    def predict(self, model: Any, path: Path, options: dict[str, Any]) -> pd.DataFrame | None:
        """Streams: the file is read, scored and written in chunks (bounded memory), so it
        writes ``--out`` (or stdout) itself and returns None."""
        import sys

        from .runtime import stream_predictions

        out = options.get("out")
        rows = stream_predictions(model, Path(path), Path(out) if out else None)
        if out:
            print(f"{rows} predictions → {out}", file=sys.stderr)
            print(out)
        return None

    def evaluate(self, model: Any, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        from .runtime import evaluate_table

        return evaluate_table(model, Path(path), options)

    # -------------------------------------------------------------- report
    def report(
        self, run_dir: Path, metrics: dict[str, Any], data: FraudData, model: Any
    ) -> list[ReportSection]:
        from .report import comparison_section, curve_section, data_section, transfer_section

        sections = [data_section(data.info), comparison_section(metrics)]
        _, _, targets = data.prepared.part("test")
        if data.test_scores is not None and 0 < targets.sum() < len(targets):
            scores = {"FT-Transformer": data.test_scores}
            if data.baseline is not None:
                scores["gradient boosting"] = data.baseline["scores"]["test"]
            sections.append(curve_section(Path(run_dir), targets, scores))
        if data.transfer:
            sections.append(transfer_section(data.transfer))
        return sections

    # ------------------------------------------------------------ pretrain
    def pretrain_task(self, spec: Any, path: Path, options: dict[str, Any]) -> Any:
        from tl.core import PretrainTask

        from .data import TableDataset, collate_rows

        _check_backbone(spec.name)
        supervised = bool(options.get("target"))
        prepared = prepare(Path(path), {**options, "test_fraction": 0.0}, labelled=supervised)
        arch = _architecture(spec, options)
        metadata = {
            "plugin": self.name,
            "schema": prepared.schema.to_dict(),
            "architecture": arch.to_dict(),
        }
        train, val = (TableDataset(*prepared.part(name)) for name in ("train", "val"))
        if supervised:
            return self._supervised_pretrain(prepared, arch, options, train, val, metadata)
        from .pretrain import SelfSupervisedModel, ssl_metrics, ssl_predict_step, ssl_training_step

        mode = options.get("ssl") or "mask"
        return PretrainTask(
            model=SelfSupervisedModel(prepared.schema, arch, mode),
            train=train,
            val=val,
            training_step=ssl_training_step,
            predict_step=ssl_predict_step,
            metrics=ssl_metrics,
            collate=collate_rows,
            method=f"self-supervised ({mode})",
            metadata={**metadata, "method": f"ssl-{mode}"},
            info=prepared.info,
        )

    def _supervised_pretrain(self, prepared, arch, options, train, val, metadata) -> Any:
        from tl.core import PretrainTask

        from .data import collate_rows
        from .loss import FraudLoss, balanced_pos_weight
        from .model import FraudModel

        model = FraudModel(prepared.schema, arch, dropout=_dropout(options))
        model.loss = FraudLoss(
            options.get("loss") or "weighted", balanced_pos_weight(prepared.part("train")[2])
        )
        rule = _rule(options)

        def metrics(outputs: list[Any]) -> dict[str, Any]:
            scores, targets = _gather(outputs)
            return fraud_metrics(scores, targets, choose_threshold(scores, targets, rule))

        return PretrainTask(
            model=model,
            train=train,
            val=val,
            training_step=self.training_step,
            predict_step=self.predict_step,
            metrics=metrics,
            collate=collate_rows,
            monitor="average_precision",
            monitor_mode="max",
            method="supervised",
            metadata={**metadata, "method": "supervised", "target": options.get("target")},
            info=prepared.info,
        )


# ------------------------------------------------------------------ helpers
def _check_backbone(name: str | None) -> None:
    if name and name not in BACKBONES:
        raise ConfigError(
            f"unknown fraud backbone '{name}'", "--backbone", f"use {', '.join(BACKBONES)}"
        )


def _rule(options: dict[str, Any]) -> ThresholdRule:
    recall = options.get("target_recall")
    if recall is not None and not 0 < float(recall) <= 1:
        raise ConfigError("--target-recall must be in (0, 1]", "--target-recall", "e.g. 0.8")
    cost_fp = float(options.get("cost_fp") if options.get("cost_fp") is not None else 1.0)
    cost_fn = float(options.get("cost_fn") if options.get("cost_fn") is not None else 10.0)
    if cost_fp <= 0 or cost_fn <= 0:
        raise ConfigError(
            "costs must be positive", "--cost-fp/--cost-fn", "e.g. --cost-fp 1 --cost-fn 20"
        )
    return ThresholdRule(cost_fp, cost_fn, None if recall is None else float(recall))


def _dropout(options: dict[str, Any]) -> float:
    value = options.get("dropout")
    return 0.1 if value is None else float(value)


def _architecture(spec: Any, options: dict[str, Any]) -> Any:
    """Sizes from the pretrained weights' metadata when there are any, then the flags."""
    from .model import Architecture

    base: dict[str, Any] = {}
    weights = getattr(spec, "tl_weights", None)
    if weights is not None:
        base = dict(_fraud_meta(_weights_meta(weights)).get("architecture", {}))
    for key in ("d_token", "n_blocks", "n_heads"):
        if options.get(key):
            base[key] = int(options[key])
    return Architecture.from_dict(base)


def _weights_meta(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        raw = (handle.metadata() or {}).get("tl", "{}")
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return {}


def _fraud_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The plugin's part of a weights file's metadata (the core nests it in ``weights_meta``)."""
    return meta.get("weights_meta", meta) if isinstance(meta.get("weights_meta"), dict) else meta


def _gather(outputs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([np.asarray(o["score"], dtype=np.float64).reshape(-1) for o in outputs])
    targets = np.concatenate([np.asarray(o["target"]).reshape(-1) for o in outputs]).astype(
        np.int64
    )
    return scores, targets
