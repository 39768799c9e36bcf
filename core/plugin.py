"""The plugin protocol: what a vertical (medical, fraud, …) gives the core.

A plugin is a `Plugin` subclass registered under the entry-point group ``tl.plugins``.
This module imports no torch: the runtime half of a plugin (``predict``/``evaluate`` on an
ONNX model) must work where torch is not installed. Methods that train take and return
torch objects, but import torch lazily inside the plugin's own modules.

Life of ``tl run PLUGIN``  (driven by ``tl.core.run``):

1. ``data = plugin.load(path, options)``                → `TLData` (train/val/test + splits)
2. ``model = plugin.build_model(spec, data, options)``  → ``nn.Module`` with ``.backbone``
   and ``.head``; the core loads ``--weights`` and applies ``--strategy`` to that split
3. the core trainer calls ``training_step`` / ``predict_step`` / ``metrics`` every epoch
4. ``plugin.metrics(outputs, data, "test")``            → metrics.json (plus core keys)
5. ``plugin.export_spec(model, data)``                  → the core exports ONNX and checks parity
6. ``plugin.report(...)``                                → sections of report.md with plots

``tl predict`` / ``tl evaluate`` call ``plugin.predict`` / ``plugin.evaluate`` with an
`tl.core.runtime.OnnxModel`; no torch is imported on that path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import click
    import pandas as pd

    from .runtime import OnnxModel

API_VERSION = 1


@dataclass
class TLData:
    """A loaded dataset: three splits plus what the report and splits.csv need.

    ``train``/``val``/``test`` are map-style datasets (``len`` + ``__getitem__``) whose items
    the plugin's ``collate`` (or torch's default collate) turns into batches.
    ``splits`` has one row per item with at least the columns ``item`` and ``split``.
    """

    train: Any
    val: Any
    test: Any
    splits: pd.DataFrame
    labels: list[str] = field(default_factory=list)
    task: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    collate: Any = None

    def describe(self) -> dict[str, Any]:
        """Facts about the data for report.md (counts, columns, skipped items …)."""
        return dict(self.info)


@dataclass
class ReportSection:
    """A block of report.md: a heading, markdown text, and PNG plots already written."""

    title: str
    markdown: str = ""
    images: list[str] = field(default_factory=list)


@dataclass
class ExportSpec:
    """What to export: a module that maps the *runtime* inputs to outputs.

    ``module`` must contain every preprocessing step that can live in a graph
    (casting, scaling, normalisation, feature encoding …). ``batches`` are real test
    batches as the runtime will feed them (numpy arrays by input name); the core exports
    with a dynamic batch axis and checks ONNX against torch on all of them.
    ``compare`` names the outputs whose max abs difference is checked against
    ``tolerance`` and ``agreement_output`` the one whose argmax (or >0.5 for one column)
    must agree. ``metadata`` lands in ``metadata_props["tl"]`` next to core fields.
    ``canonical(name, array)``, when given, puts both sides of a compared output into one
    order first (a detector's rows by box, not by scores that tie within float error).
    """

    module: Any
    batches: list[dict[str, Any]]
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    metadata: dict[str, Any] = field(default_factory=dict)
    compare: list[str] | None = None
    agreement_output: str | None = None
    tolerance: float = 1e-3
    canonical: Callable[[str, Any], Any] | None = None


class Plugin:
    """Base class of every plugin. Override what your vertical needs.

    Class attributes describe the plugin; ``monitor`` names the validation metric (a key of
    what ``metrics(..., "val")`` returns, or ``"loss"``) used for early stopping and the
    best checkpoint.
    """

    name: str = ""
    api_version: int = API_VERSION
    version: str = "0"
    description: str = ""
    task: str = ""
    default_backbone: str = "resnet18"
    monitor: str = "loss"
    monitor_mode: str = "min"
    #: the plugin's own defaults for shared options (e.g. ``{"dropout": 0.2}``); flags and
    #: ``--config`` still win
    defaults: dict[str, Any] = {}

    # ----------------------------------------------------------------- CLI
    def cli_options(self) -> list[click.Option]:
        """Extra options of ``tl run PLUGIN`` (e.g. ``--target``); values reach ``options``."""
        return []

    def pretrain_options(self) -> list[click.Option]:
        """Extra options of ``tl pretrain PLUGIN``."""
        return []

    # ---------------------------------------------------------------- data
    def demo(self, out_dir: Path, size: str = "small", seed: int = 0) -> Path:
        """Write a realistic generated dataset in the plugin's formats; return its root."""
        raise NotImplementedError

    def load(self, path: Path, options: dict[str, Any]) -> TLData:
        """Read ``path`` into train/val/test splits (the plugin's own split rules)."""
        raise NotImplementedError

    # --------------------------------------------------------------- model
    def build_model(self, spec: Any, data: TLData, options: dict[str, Any]) -> Any:
        """Return an ``nn.Module`` with ``.backbone`` and ``.head`` submodules.

        ``spec`` is a `tl.core.backbones.BackboneSpec` (name, weights, options); image plugins
        call `tl.core.create_backbone(spec, ...)`. Weights other than timm's (our run
        directories, ``tl pretrain`` outputs) are loaded by the core afterwards.
        """
        raise NotImplementedError

    def split_batch(self, batch: Any) -> tuple[Any, Any]:
        """(inputs, targets) of a batch; default: a ``(inputs, targets)`` pair."""
        inputs, targets = batch
        return inputs, targets

    def loss(self, outputs: Any, targets: Any) -> Any:
        """Training loss of ``model(inputs)`` against ``targets``."""
        raise NotImplementedError

    def training_step(self, model: Any, batch: Any) -> Any:
        inputs, targets = self.split_batch(batch)
        return self.loss(model(inputs), targets)

    def predict_step(self, model: Any, batch: Any) -> Any:
        """What ``metrics`` consumes for one batch (moved to CPU by the core)."""
        inputs, targets = self.split_batch(batch)
        outputs = model(inputs)
        return {"outputs": outputs, "targets": targets, "loss": self.loss(outputs, targets)}

    def metrics(self, outputs: list[Any], data: TLData, split: str) -> dict[str, Any]:
        """Metrics of one split from the list of ``predict_step`` results."""
        raise NotImplementedError

    def finalize(self, model: Any, data: TLData, outputs: dict[str, list[Any]]) -> dict[str, Any]:
        """After training (best weights loaded), with ``predict_step`` results of "val" and
        "test": fit what is fitted on validation (temperature, threshold …).

        Returns ``{"metrics": {...}, "export": {...}}``: "metrics" override/extend the test
        metrics, "export" reaches ``export_spec`` and ``predictions``.
        """
        return {"metrics": {}, "export": {}}

    def predictions(
        self, outputs: list[Any], data: TLData, extra: dict[str, Any]
    ) -> pd.DataFrame | None:
        """test_predictions.csv: one row per test item (id, target, prediction, scores)."""
        return None

    # ------------------------------------------------------------- weights
    def weights_metadata(self, model: Any, data: TLData) -> dict[str, Any]:
        """JSON-able facts saved with every checkpoint / pretrained weights file
        (e.g. an item vocabulary or column list) so a later run can map weights onto new data."""
        return {}

    def adapt_weights(
        self, state_dict: dict[str, Any], source_meta: dict[str, Any], model: Any, data: TLData
    ) -> dict[str, Any]:
        """Rewrite a saved state dict (keys as in ``model.state_dict()``) to fit ``model``.

        Called before the core copies every tensor whose name and shape match; e.g. recsys
        moves shared items' embeddings to their new rows. Default: unchanged.
        """
        return state_dict

    # -------------------------------------------------------------- export
    def export_spec(self, model: Any, data: TLData, extra: dict[str, Any]) -> ExportSpec:
        """``extra``: the "export" dict of ``finalize`` plus ``run_dir`` (for side files)."""
        raise NotImplementedError

    # ------------------------------------------------------------- runtime (no torch)
    def predict(self, model: OnnxModel, path: Path, options: dict[str, Any]) -> pd.DataFrame:
        """Batch inference with onnxruntime; one row per item."""
        raise NotImplementedError

    def evaluate(self, model: OnnxModel, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        """Metrics on new labelled data with onnxruntime."""
        raise NotImplementedError

    # -------------------------------------------------------------- report
    def report(
        self, run_dir: Path, metrics: dict[str, Any], data: TLData, model: Any
    ) -> list[ReportSection]:
        """Plugin sections of report.md; write plots into ``run_dir`` and name them."""
        return []

    # ------------------------------------------------------------ pretrain
    def pretrain_task(self, spec: Any, path: Path, options: dict[str, Any]) -> Any:
        """For ``tl pretrain``: a `tl.core.pretrain.PretrainTask` (model, data, steps)."""
        raise NotImplementedError
