"""The plugin protocol: what a vertical (medical, fraud, …) gives the core.

A plugin is a `Plugin` subclass registered under the entry-point group ``tl.plugins``.
This module imports no torch: the runtime half of a plugin (``predict``/``evaluate`` on an
ONNX model) must work where torch is not installed. Methods that train take and return
torch objects, but import torch lazily inside the plugin's own modules.

Life of ``tl run PLUGIN``  (driven by ``tl.core.run``; protocol v2, see ARCHITECTURE.md):

1. ``data = plugin.load(path, options)``                  → `TLData`; nothing mutates it later
2. ``model = plugin.build_model(spec, data, options)``    → a fresh ``nn.Module`` with
   ``.backbone`` and ``.head``; what later steps need about this model lives on the model
3. the core trainer calls ``training_step`` / ``predict_step`` / ``metrics`` every epoch
4. ``fitted = plugin.finalize(model, data, outputs, options)`` → a frozen `Fitted` value
5. ``plugin.predictions(outputs, data, fitted)``          → test_predictions.csv
6. ``plugin.export_spec(model, data, fitted, run_dir)``   → the core exports ONNX, checks parity
7. ``plugin.report(run_dir, metrics, data, model, fitted)`` → sections of report.md

``options`` is a read-only `tl.core.Config`: the core's `RunConfig` and the plugin's own
``options_type`` dataclass, resolved once. Training one plugin several times in a process
(main model, ``--compare-scratch``, adversarial plain model, distill student) cannot
interfere, because every fitted value travels as a value.

``tl predict`` / ``tl evaluate`` go through `tl.core.inference`; no torch on that path.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .config import Config
    from .inference import InputBatch, Skipped
    from .runtime import OnnxModel

API_VERSION = 2


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


def _frozen(values: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class Fitted:
    """What `Plugin.finalize` fits after training, as one value handed to the later steps.

    ``metrics``: final test metrics (they extend/override the raw test metrics);
    ``export``: JSON-able values the exported model and test_predictions.csv use (threshold,
    temperature …; they also land in the ONNX metadata); ``artifacts``: what the report
    needs (test scores, curves, a baseline's scores …).
    """

    metrics: Mapping[str, Any] = field(default_factory=dict)
    export: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("metrics", "export", "artifacts"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))


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


@dataclass(frozen=True)
class DemoGuide:
    """What `tl demo` tells a newcomer about the data it generated: README.md and the
    commands printed after the path.

    ``files``: (path relative to the demo root, what it is for) — every top-level entry at
    least, folders with a trailing ``/``; ``commands``: the next `tl` command lines, in order, as they
    run from the folder `tl demo` ran in, with flags that work on this data; ``about``: a
    paragraph on how the data was generated.
    """

    files: list[tuple[str, str]]
    commands: list[str]
    about: str = ""

    @staticmethod
    def latest_run(prefix: str, out: str = "runs") -> str:
        """A shell word for the newest run directory ``OUT/PREFIX-<stamp>``."""
        return f'"$(ls -d {shlex.quote(f"{out}/{prefix}-")}* | tail -1)"'

    def markdown(self, title: str) -> str:
        files = "\n".join(f"- `{path}` — {what}" for path, what in self.files)
        commands = "\n".join(self.commands)
        about = f"{self.about.strip()}\n\n" if self.about.strip() else ""
        return (
            f"# {title}\n\n{about}## Files\n\n{files}\n\n## Next\n\n"
            "Run these from the folder you ran `tl demo` in; each `tl run` / `tl pretrain` "
            "prints its run directory (under `runs/`) as its last line.\n\n"
            f"```bash\n{commands}\n```\n"
        )


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
    #: the plugin's overrides of core defaults (e.g. ``{"dropout": 0.2}``); --config and
    #: flags still win
    defaults: dict[str, Any] = {}
    #: False when the plugin's models are not timm models: default ``--weights none``, and
    #: ``--weights hub`` is an error
    hub_weights: bool = True
    #: dataclasses of the plugin's own options (fields made with `tl.core.option`) of
    #: ``tl run``, ``tl pretrain`` and ``tl predict``/``tl evaluate``
    options_type: type | None = None
    pretrain_options_type: type | None = None
    predict_options_type: type | None = None
    #: modules training needs beyond the core's `tl[train]` (e.g. ``("torchmetrics",)``);
    #: `tl run` / `tl pretrain` check them before loading data
    train_modules: tuple[str, ...] = ()

    # ---------------------------------------------------------------- data
    def demo(self, out_dir: Path, size: str = "small", seed: int = 0) -> Path:
        """Write a realistic generated dataset in the plugin's formats; return its root."""
        raise NotImplementedError

    def demo_guide(self, root: Path) -> DemoGuide:
        """What `demo` wrote under ``root`` and the commands to run on it next (`tl demo`
        writes ``root/README.md`` from it). Default: every top-level entry as generated
        data, then `tl run` → `tl predict` on ``root``."""
        root = Path(root)
        files = [
            (f"{p.name}/" if p.is_dir() else p.name, "generated data")
            for p in sorted(root.iterdir())
            if p.name != "README.md" and not p.name.startswith(".")
        ]
        data = shlex.quote(str(root))
        return DemoGuide(
            files=files,
            commands=[
                f"tl run {self.name} --data {data}",
                f"tl predict {DemoGuide.latest_run(self.name)} --data {data} "
                f"--out {self.name}-predictions.csv",
            ],
        )

    def load(self, path: Path, options: Config) -> TLData:
        """Read ``path`` into train/val/test splits (the plugin's own split rules)."""
        raise NotImplementedError

    # --------------------------------------------------------------- model
    def build_model(self, spec: Any, data: TLData, options: Config) -> Any:
        """Return a new ``nn.Module`` with ``.backbone`` and ``.head`` submodules.

        Never store anything on ``self`` or ``data`` here: the same plugin builds several
        models in one run; what later steps need about this model goes on the model.

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

    def model_loss(self, model: Any) -> Callable[[Any, Any], Any]:
        """``loss(outputs, targets)`` of ``model``: the core's attacks and distillation use
        it. Default `loss`; a plugin whose loss depends on the data a model was built for
        (class weights …) keeps the loss on the model and returns it here."""
        return self.loss

    def training_step(self, model: Any, batch: Any) -> Any:
        inputs, targets = self.split_batch(batch)
        return self.model_loss(model)(model(inputs), targets)

    def predict_step(self, model: Any, batch: Any) -> Any:
        """What ``metrics`` consumes for one batch (moved to CPU by the core)."""
        inputs, targets = self.split_batch(batch)
        outputs = model(inputs)
        loss = self.model_loss(model)(outputs, targets)
        return {"outputs": outputs, "targets": targets, "loss": loss}

    def metrics(self, outputs: list[Any], data: TLData, split: str) -> dict[str, Any]:
        """Metrics of one split from the list of ``predict_step`` results."""
        raise NotImplementedError

    def finalize(
        self, model: Any, data: TLData, outputs: dict[str, list[Any]], options: Config
    ) -> Fitted:
        """After training (best weights loaded), with ``predict_step`` results of "val" and
        "test": fit what is fitted on validation (temperature, threshold …) and return it."""
        return Fitted()

    def predictions(self, outputs: list[Any], data: TLData, fitted: Fitted) -> pd.DataFrame | None:
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
    def export_spec(self, model: Any, data: TLData, fitted: Fitted, run_dir: Path) -> ExportSpec:
        """The export of ``model`` with the ``fitted`` values (``run_dir`` for side files)."""
        raise NotImplementedError

    # ------------------------------------------------------------- runtime (no torch)
    # `tl predict` / `tl evaluate` (tl.core.inference): the core runs the model, shows
    # progress, counts skipped items and writes the output; the plugin reads and decodes.
    #: what the progress lines count ("images", "rows", "users")
    item_noun: str = "items"
    #: the output column that names an item; a skipped item's row holds its id there
    item_column: str = "item"

    def read_batches(
        self,
        model: OnnxModel,
        path: Path,
        options: Mapping[str, Any],
        batch_size: int,
        labelled: bool = False,
    ) -> Iterable[InputBatch | Skipped]:
        """Model inputs of ``path``, a batch at a time (memory stays bounded), and a `Skipped`
        for each item that cannot be read (the core raises for it unless ``--skip-bad``).
        ``labelled`` (``tl evaluate``): ``items`` also holds each item's label. Return a
        `tl.core.Batches` to give progress lines a total."""
        raise NotImplementedError

    def decode(
        self,
        model: OnnxModel,
        batch: InputBatch,
        outputs: dict[str, Any],
        options: Mapping[str, Any],
    ) -> pd.DataFrame:
        """Rows of the output for one batch (``outputs``: the model's arrays by name)."""
        raise NotImplementedError

    def score(
        self, model: OnnxModel, rows: pd.DataFrame, extras: list[Any], options: Mapping[str, Any]
    ) -> dict[str, Any]:
        """`tl evaluate`'s metrics from all decoded rows and each batch's ``extra``."""
        raise NotImplementedError

    def predict(self, model: OnnxModel, path: Path, options: dict[str, Any]) -> pd.DataFrame:
        """Deprecated (protocol v1): used only by plugins without ``read_batches``."""
        raise NotImplementedError

    def evaluate(self, model: OnnxModel, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        """Deprecated (protocol v1): used only by plugins without ``read_batches``."""
        raise NotImplementedError

    # -------------------------------------------------------------- report
    def report(
        self, run_dir: Path, metrics: dict[str, Any], data: TLData, model: Any, fitted: Fitted
    ) -> list[ReportSection]:
        """Plugin sections of report.md; write plots into ``run_dir`` and name them."""
        return []

    # ------------------------------------------------------------ pretrain
    def pretrain_task(self, spec: Any, path: Path, options: Config) -> Any:
        """For ``tl pretrain``: a `tl.core.pretrain.PretrainTask` (model, data, steps)."""
        raise NotImplementedError

    # -------------------------------------------------------------- tuning
    def search_space(self, options: Config) -> dict[str, Any]:
        """`tl tune`'s default search space (``options``: the resolved options every trial
        starts from); ``--space FILE.yaml`` replaces it. Plain data in the form of
        `tl.core.tuning.space`: ``{option: {"type": "float" | "int" | "categorical", "low",
        "high", "log", "step", "choices", "when": {option: values}}}``.

        Default: peak LR and weight decay (log scale), dropout and label smoothing where the
        plugin offers them (`option_groups`); with
        pretrained weights (not ``--weights none``) also the strategy among linear,
        partial:2, full and llrd (then its layer decay), and lora (then its rank) where the
        plugin offers LoRA. Override it to add the plugin's own knobs (``super()`` and
        edit) or to drop what its models ignore."""
        from .options import plugin_groups

        space: dict[str, Any] = {
            "lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
            "weight_decay": {"type": "float", "low": 1e-6, "high": 0.1, "log": True},
        }
        groups = plugin_groups(self)
        if "dropout" in groups:
            space["dropout"] = {"type": "float", "low": 0.0, "high": 0.5}
        if "label_smoothing" in groups:
            space["label_smoothing"] = {"type": "float", "low": 0.0, "high": 0.2}
        if str(options.get("weights", "hub")) != "none":
            lora = "lora" in groups
            strategies = ["linear", "partial:2", "full", "llrd", "auto"] + (
                ["lora"] if lora else []
            )
            space["strategy"] = {"type": "categorical", "choices": strategies}
            space["layer_decay"] = {"type": "float", "low": 0.5, "high": 0.95,
                                    "when": {"strategy": "llrd"}}  # fmt: skip
            if lora:
                space["lora_rank"] = {"type": "int", "low": 4, "high": 32, "log": True,
                                      "when": {"strategy": "lora"}}  # fmt: skip
        return space
