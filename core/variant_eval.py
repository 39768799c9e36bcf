"""A run's model variants (fp16, int8) measured against its fp32 model. Never imports torch.

Everything goes through the plugin's own runtime hooks (`read_batches` → `decode` → `score`,
as `tl evaluate` does): the items of one split of the run (``splits.csv``) are read once and
kept, so that the fp32 model and the variant see the very same inputs, in the same process,
for the metrics and for the CPU latency.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .inference import Batches, InputBatch, RuntimeConfig, Skipped, evaluate
from .runtime import MODEL_FILENAME, OnnxModel, load_onnx_model

EXPORT_JSON = "export.json"
#: tl evaluate's own counters: not model quality, so never a "delta"
_NOT_METRICS = {
    "n", "skipped", "rows_without_label", "threshold", "n_rows", "n_fraud", "fraud_rate",
    "support", "unseen_categories",
}  # fmt: skip


@dataclass(frozen=True)
class RunSource:
    """What a finished run says about its data: where it lives and which item is in which split."""

    run_dir: Path
    model_path: Path
    data: Path
    splits: dict[str, set[str]]  # split → item ids, as ``splits.csv`` names them


def load_run_source(run_dir: Path, data: Path | None = None, need_data: bool = True) -> RunSource:
    """The run's model, data path (``config.yaml``'s ``data`` unless ``data``) and splits
    (with ``need_data`` False: only the model is checked)."""
    import pandas as pd
    import yaml

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not (run_dir / "config.yaml").is_file():
        raise DataError(
            "not a run directory (no config.yaml)", run_dir, "pass a directory made by `tl run`"
        )
    model_path = run_dir / MODEL_FILENAME
    if not model_path.is_file():
        raise DataError("the run has no model.onnx", run_dir, "let `tl run` finish (or --resume)")
    if not need_data:
        return RunSource(run_dir, model_path, Path(data or ""), {})
    splits_path = run_dir / "splits.csv"
    if not splits_path.is_file():
        raise DataError(
            "the run has no splits.csv: its test items are unknown",
            run_dir,
            "export a run made by `tl run` (it writes splits.csv)",
        )
    frame = pd.read_csv(splits_path, dtype=str, keep_default_na=False)
    if not {"item", "split"} <= set(frame.columns):
        raise DataError("splits.csv has no item/split columns", splits_path, "rerun `tl run`")
    splits = {str(s): set(g["item"]) for s, g in frame.groupby("split")}
    if data is None:
        config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        data = Path(str(config.get("data") or ""))
    if not str(data) or not Path(data).exists():
        raise DataError(
            "the run's data is not there any more", data, "pass --data PATH (where it lives now)"
        )
    return RunSource(run_dir, model_path, Path(data), splits)


@dataclass
class SplitBatches:
    """One split's batches, read once: what every model of the comparison is fed."""

    entries: list[InputBatch | Skipped]
    items: int
    filtered: bool  # False: the plugin's labelled read defines the split (no item ids match)

    @property
    def batches(self) -> list[InputBatch]:
        return [e for e in self.entries if isinstance(e, InputBatch)]

    @property
    def skipped(self) -> int:
        return sum(isinstance(e, Skipped) for e in self.entries)


def runtime_options(plugin: Any, data: Path) -> Any:
    """`tl evaluate`'s options with the plugin's predict defaults; unreadable items are
    skipped and counted (the same ones for every model compared)."""
    from .config import Config

    own_type = getattr(plugin, "predict_options_type", None)
    core = RuntimeConfig(data=str(data), device="cpu", skip_bad=True)
    return Config(core, own_type() if own_type else None, command="evaluate")  # type: ignore[arg-type]


def read_split(
    plugin: Any,
    model: OnnxModel,
    source: RunSource,
    split: str,
    batch_size: int = 32,
    limit: int | None = None,
) -> SplitBatches:
    """The labelled items of ``split`` through the plugin's ``read_batches`` (at most
    ``limit``). Items are matched to ``splits.csv`` by the plugin's item column."""
    wanted = source.splits.get(split)
    if not wanted:
        raise DataError(f"the run has no {split} items", source.run_dir / "splits.csv", "rerun")
    options = runtime_options(plugin, source.data)
    stream = plugin.read_batches(model, source.data, options, batch_size, labelled=True)
    entries: list[InputBatch | Skipped] = []
    items = 0
    filtered = False
    for entry in stream:
        if isinstance(entry, Skipped):
            if entry.item in wanted:
                entries.append(entry)
            continue
        batch, matched = _only(entry, wanted, plugin)
        filtered = filtered or matched
        if batch is None:
            continue
        if limit is not None and items + len(batch.items) > limit:
            batch = _head(batch, limit - items)
        entries.append(batch)
        items += len(batch.items)
        if limit is not None and items >= limit:
            break
    if not items:
        raise DataError(
            f"none of the run's {split} items could be read",
            source.data,
            "pass --data with the run's data",
        )
    return SplitBatches(entries, items, filtered)


def _key(batch: InputBatch, plugin: Any) -> str | None:
    for column in (getattr(plugin, "item_column", None), "item", "row"):
        if column and column in batch.items.columns:
            return column
    return None


def _only(batch: InputBatch, wanted: set[str], plugin: Any) -> tuple[InputBatch | None, bool]:
    """The batch's rows whose item is in ``wanted`` (None if none); unchanged (and False)
    when its items cannot be matched or its inputs are not one row per item."""
    key = _key(batch, plugin)
    rows = len(batch.items)
    if key is None or any(np.shape(v)[:1] != (rows,) for v in batch.inputs.values()):
        return batch, False
    mask = batch.items[key].astype(str).isin(wanted).to_numpy()
    if not mask.any():
        return None, True
    if mask.all():
        return batch, True
    inputs = {name: value[mask] for name, value in batch.inputs.items()}
    return InputBatch(inputs, batch.items[mask].reset_index(drop=True), batch.extra), True


def _head(batch: InputBatch, n: int) -> InputBatch:
    inputs = {name: value[:n] for name, value in batch.inputs.items()}
    return InputBatch(inputs, batch.items.iloc[:n].reset_index(drop=True), batch.extra)


class _Replay:
    """The plugin with ``read_batches`` replaced by batches already read."""

    def __init__(self, plugin: Any, split: SplitBatches) -> None:
        self._plugin = plugin
        self._split = split

    def read_batches(self, *args: Any, **kwargs: Any) -> Batches:
        return Batches(list(self._split.entries), total=self._split.items + self._split.skipped)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plugin, name)


def split_metrics(plugin: Any, model: OnnxModel, split: SplitBatches, data: Path) -> dict:
    """The plugin's ``score`` of ``model`` on the split (as `tl evaluate` computes it)."""
    import io

    from .progress import ProgressReporter

    quiet = ProgressReporter(enabled=False, stream=io.StringIO())
    options = runtime_options(plugin, data)
    return evaluate(_Replay(plugin, split), model, data, options, 64, quiet)


def numeric_leaves(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Finite numbers of a (nested) metrics dict, keyed ``a.b``; counters left out."""
    leaves: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if key in _NOT_METRICS:
            continue
        if isinstance(value, Mapping):
            leaves.update(numeric_leaves(value, f"{name}."))
        elif _is_number(value) and math.isfinite(float(value)):
            leaves[name] = float(value)
    return leaves


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def metric_deltas(reference: Mapping[str, Any], variant: Mapping[str, Any]) -> dict[str, float]:
    """variant − fp32 for every numeric metric both have."""
    ref, var = numeric_leaves(reference), numeric_leaves(variant)
    return {k: round(var[k] - ref[k], 6) for k in ref if k in var}


def monitored_drop(plugin: Any, reference: Mapping, variant: Mapping) -> tuple[str, float]:
    """(monitored metric, how much worse the variant is: > 0 is a loss)."""
    name = str(plugin.monitor)
    if name not in reference or name not in variant:
        raise DataError(
            f"tl evaluate gives no '{name}' (the plugin's monitored metric)",
            plugin.name,
            "report this plugin bug",
        )
    ref, var = float(reference[name]), float(variant[name])
    drop = ref - var if getattr(plugin, "monitor_mode", "max") == "max" else var - ref
    return name, 0.0 if abs(drop) < 1e-12 else drop


def cpu_latency(
    models: Sequence[OnnxModel], batches: Sequence[InputBatch], seconds: float = 1.0
) -> list[float]:
    """Median seconds per batch of each model, on CPU, one thread, calls interleaved so
    that machine load hits every model alike."""
    feeds = [b.inputs for b in batches[:4]]
    for model in models:
        model.run(feeds[0])  # warm-up: arena allocation, kernel selection
    times: list[list[float]] = [[] for _ in models]
    deadline = time.perf_counter() + seconds * len(models)
    rounds = 0
    while rounds < 3 or (time.perf_counter() < deadline and rounds < 200):
        for k, model in enumerate(models):
            for feed in feeds:
                start = time.perf_counter()
                model.run(feed)
                times[k].append(time.perf_counter() - start)
        rounds += 1
    return [statistics.median(t) for t in times]


def cpu_model(path: Path) -> OnnxModel:
    """``path`` on the CPU provider with one intra-op thread (for comparable latencies)."""
    return load_onnx_model(path, device="cpu", threads=1)


def compare(
    plugin: Any,
    source: RunSource,
    reference: OnnxModel,
    variant: OnnxModel,
    split: SplitBatches,
    latency: bool = True,
) -> dict[str, Any]:
    """Metrics of both models on the split, their deltas, the monitored drop, size and CPU
    latency ratios (variant / fp32)."""
    ref_metrics = split_metrics(plugin, reference, split, source.data)
    var_metrics = split_metrics(plugin, variant, split, source.data)
    monitor, drop = monitored_drop(plugin, ref_metrics, var_metrics)
    result: dict[str, Any] = {
        "monitor": monitor,
        "monitored_drop": round(drop, 6),
        "deltas": metric_deltas(ref_metrics, var_metrics),
        "metrics": _public(var_metrics),
        "fp32_metrics": _public(ref_metrics),
        "size_bytes": variant.path.stat().st_size,
        "size_ratio": round(variant.path.stat().st_size / reference.path.stat().st_size, 4),
        "eval": {
            "split": "test",
            "items": split.items,
            "skipped": split.skipped,
            "items_from": "splits.csv" if split.filtered else "the plugin's labelled read",
        },
    }
    result["max_abs_diff"] = {
        name: round(diff, 6)
        for name, diff in output_agreement(reference, variant, split.batches).items()
    }
    if latency:
        ref_s, var_s = cpu_latency([reference, variant], split.batches)
        result["cpu_latency_ms"] = {"fp32": round(ref_s * 1e3, 3), "variant": round(var_s * 1e3, 3)}
        result["cpu_latency_ratio"] = round(var_s / ref_s, 4)
        result["cpu_latency_batch"] = len(split.batches[0].items)
    return result


def _public(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "model"}


def output_agreement(
    reference: OnnxModel, variant: OnnxModel, batches: Sequence[InputBatch]
) -> dict[str, float]:
    """Largest absolute difference per float output over the batches."""
    worst: dict[str, float] = {}
    for batch in batches:
        ref, var = reference.run(batch.inputs), variant.run(batch.inputs)
        for name, value in ref.items():
            a = np.asarray(value)
            if a.dtype.kind != "f":
                continue
            diff = float(np.max(np.abs(a - np.asarray(var[name], dtype=a.dtype)), initial=0.0))
            worst[name] = max(worst.get(name, 0.0), diff)
    return worst


def write_export_json(run_dir: Path, precision: str, entry: Mapping[str, Any]) -> Path:
    """Merge ``entry`` as ``precision``'s record into RUN_DIR/export.json (atomic)."""
    from .fileio import write_json_atomic

    path = Path(run_dir) / EXPORT_JSON
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
        current = current if isinstance(current, dict) else {}
    except (OSError, ValueError):
        current = {}
    current[precision] = dict(entry)
    return write_json_atomic(path, current)


def stamp_variant(fp32: Path, variant: Path, precision: str, **details: Any) -> None:
    """Give ``variant`` the fp32 model's metadata (so it loads as the run's model does),
    with its ``precision`` and ``details`` added to the tl metadata."""
    import onnx

    from .runtime import METADATA_KEY, read_metadata

    meta = read_metadata(fp32)
    meta.update({"precision": precision, "variant_of": fp32.name, **details})
    source = onnx.load(str(fp32), load_external_data=False)
    model = onnx.load(str(variant))
    del model.metadata_props[:]
    for prop in source.metadata_props:
        if prop.key != METADATA_KEY:
            model.metadata_props.add(key=prop.key, value=prop.value)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta))
    onnx.save(model, str(variant))


@dataclass
class Job:
    """One `tl export` of a run: the plugin, the run's data and splits, the fp32 model on
    CPU and the test split read once."""

    plugin: Any
    source: RunSource
    reference: OnnxModel
    test: SplitBatches
    log: Any

    def entry(self, precision: str, path: Path, result: Mapping[str, Any], **more: Any) -> dict:
        """export.json's record of a variant."""
        return {"precision": precision, "file": path.name, **result, **more}


def prepare_job(run_dir: Path, data: Path | None, log: Any) -> Job:
    from .registry import load_plugin

    source = load_run_source(run_dir, data)
    reference = cpu_model(source.model_path)
    plugin = load_plugin(reference.plugin)
    log(f"reading the run's test items from {source.data}")
    test = read_split(plugin, reference, source, "test")
    return Job(plugin, source, reference, test, log)
