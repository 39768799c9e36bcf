"""The medical imaging plugin: X-ray/CT/photo classification from PNG/JPEG/TIFF/BMP/DICOM.

Import-light on purpose: torch is imported only inside the methods that train, so
``tl predict`` works where torch is absent.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from tl.core import POSITIVE, ExportSpec, FiniteRange, Plugin, ReportSection, TLData


def _version() -> str:
    try:
        return metadata.version("tl-medical")
    except metadata.PackageNotFoundError:
        return "0"


class MedicalPlugin(Plugin):
    name = "medical"
    version = _version()
    description = "X-ray/CT/photo classification from PNG/JPEG/TIFF/BMP/DICOM (binary, multi-class, multi-label)"
    task = "classification"
    default_backbone = "resnet18"
    monitor = "auroc"
    monitor_mode = "max"

    # ------------------------------------------------------------------ CLI
    def cli_options(self) -> list[Any]:
        import click

        return [
            click.Option(
                ["--window"],
                help="DICOM window CENTER,WIDTH (default: the file's VOI LUT / window).",
            ),
            click.Option(
                ["--image-size"],
                type=click.IntRange(min=16),
                help="Square input size in pixels (default 224).",
            ),
            click.Option(
                ["--channels"],
                type=click.Choice(["1", "3"]),
                help="Force 1 or 3 input channels (default: 1 for grayscale data).",
            ),
            click.Option(
                ["--target-sensitivity"],
                type=FiniteRange(0, 1, min_open=True),
                help="Binary: pick the threshold reaching this sensitivity on validation (default: Youden's J).",
            ),
            click.Option(
                ["--val-fraction"],
                type=FiniteRange(0, 1, min_open=True, max_open=True),
                help="Validation fraction when the data has no split column (default 0.15).",
            ),
            click.Option(
                ["--test-fraction"],
                type=FiniteRange(0, 1, min_open=True, max_open=True),
                help="Test fraction when the data has no split column (default 0.2).",
            ),
            click.Option(
                ["--augment/--no-augment"], default=None, help="Training augmentation (default on)."
            ),
        ]

    def pretrain_options(self) -> list[Any]:
        import click

        return [
            click.Option(
                ["--method"],
                type=click.Choice(["simclr", "supervised"]),
                help="simclr: self-supervised on unlabelled images (any folder layout); "
                "supervised: a labelled folder/manifest (default simclr).",
            ),
            click.Option(
                ["--image-size"],
                type=click.IntRange(min=16),
                help="Square input size; use the same for `tl run`.",
            ),
            click.Option(
                ["--channels"], type=click.Choice(["1", "3"]), help="Force 1 or 3 channels."
            ),
            click.Option(["--window"], help="DICOM window CENTER,WIDTH."),
            click.Option(
                ["--ssl-temperature"], type=POSITIVE, help="NT-Xent temperature (default 0.2)."
            ),
            click.Option(
                ["--val-fraction"],
                type=FiniteRange(0, 1, max_open=True),
                help="Held-out fraction for the loss curve.",
            ),
            click.Option(
                ["--skip-bad/--no-skip-bad"], default=None, help="Skip unreadable images."
            ),
        ]

    def predict_options(self) -> list[Any]:
        import click

        return [click.Option(["--window"], help="DICOM window CENTER,WIDTH override.")]

    # ----------------------------------------------------------------- data
    def demo(self, out_dir: Path, size: str = "small", seed: int = 0) -> Path:
        from .demo import write_demo

        return write_demo(Path(out_dir), size=size, seed=seed)

    def load(self, path: Path, options: dict[str, Any]) -> TLData:
        from .loading import load_dataset

        return load_dataset(path, options)

    # ---------------------------------------------------------------- model
    def build_model(self, spec: Any, data: Any, options: dict[str, Any]) -> Any:
        from tl.core import ClassifierModel, create_backbone
        from tl.core.backbones import data_config

        backbone = create_backbone(
            spec, image_size=data.image_size, num_classes=0, in_chans=data.in_chans
        )
        config = data_config(backbone, data.image_size, data.in_chans)
        model = ClassifierModel(
            backbone,
            len(data.labels),
            float(options.get("dropout") or 0.0),
            config["mean"],
            config["std"],
        )
        model.data_config = config
        self._loss = _make_loss(data, float(options.get("label_smoothing") or 0.0))
        self._target_sensitivity = options.get("target_sensitivity")
        return model

    def loss(self, outputs: Any, targets: Any) -> Any:
        return self._loss(outputs, targets)

    def predict_step(self, model: Any, batch: Any) -> Any:
        images, targets = batch
        logits = model(images)
        return {"logits": logits, "targets": targets, "loss": self.loss(logits, targets)}

    def metrics(self, outputs: list[Any], data: Any, split: str) -> dict[str, Any]:
        from tl.core.calibration import sigmoid, softmax
        from tl.core.metrics import classification_metrics

        logits, targets = _gather(outputs)
        probs = sigmoid(logits) if data.multilabel else softmax(logits)
        return classification_metrics(probs, targets, data.labels, multilabel=data.multilabel)

    def finalize(self, model: Any, data: Any, outputs: dict[str, list[Any]]) -> dict[str, Any]:
        """Temperature scaling and the binary threshold, both fitted on validation only."""
        from tl.core.calibration import fit_temperature, sigmoid, softmax
        from tl.core.metrics import (
            choose_threshold,
            classification_metrics,
            expected_calibration_error,
        )

        val_logits, val_targets = _gather(outputs["val"])
        test_logits, test_targets = _gather(outputs["test"])
        temperature = fit_temperature(val_logits, val_targets, multilabel=data.multilabel)
        squash = sigmoid if data.multilabel else softmax
        val_probs, test_probs = squash(val_logits, temperature), squash(test_logits, temperature)
        threshold = None
        if len(data.labels) == 2 and not data.multilabel:
            threshold = choose_threshold(val_probs[:, 1], val_targets, self._target_sensitivity)
        calibrated = classification_metrics(
            test_probs, test_targets, data.labels, multilabel=data.multilabel, threshold=threshold
        )
        before = self.metrics(outputs["test"], data, "test")["ece"]
        calibrated["ece_uncalibrated"] = before
        calibrated["ece_calibrated"] = (
            calibrated["ece"]
            if not data.multilabel
            else float(
                np.mean(
                    [
                        expected_calibration_error(test_probs[:, c], test_targets[:, c])
                        for c in range(len(data.labels))
                    ]
                )
            )
        )
        calibrated["temperature"] = temperature
        calibrated["threshold_rule"] = (
            None
            if threshold is None
            else (
                f"sensitivity ≥ {self._target_sensitivity}"
                if self._target_sensitivity
                else "Youden's J on validation"
            )
        )
        return {
            "metrics": calibrated,
            "export": {
                "temperature": temperature,
                "threshold": threshold,
                "test_probs": test_probs,
            },
        }

    def predictions(self, outputs: list[Any], data: Any, extra: dict[str, Any]) -> Any:
        from .runtime import prediction_frame

        _, targets = _gather(outputs)
        frame = prediction_frame(
            data.items["test"],
            extra["test_probs"],
            data.labels,
            data.multilabel,
            extra.get("threshold"),
        )
        if data.multilabel:
            frame.insert(
                1,
                "true",
                [
                    "|".join(n for n, t in zip(data.labels, row, strict=True) if t)
                    for row in targets
                ],
            )
        else:
            frame.insert(1, "true", [data.labels[t] for t in targets])
        return frame

    # --------------------------------------------------------------- export
    def export_spec(self, model: Any, data: Any, extra: dict[str, Any]) -> ExportSpec:
        from .export import ExportModule, real_batches

        module = ExportModule(model, float(extra.get("temperature", 1.0)), data.multilabel)
        config = model.data_config
        return ExportSpec(
            module=module,
            batches=real_batches(data.test, batch_size=16, max_batches=4),
            input_names=["image"],
            output_names=["logits", "probabilities"],
            dynamic_axes={
                "image": {0: "batch"},
                "logits": {0: "batch"},
                "probabilities": {0: "batch"},
            },
            compare=["probabilities"],
            agreement_output="probabilities",
            metadata={
                "multilabel": data.multilabel,
                "temperature": float(extra.get("temperature", 1.0)),
                "threshold": extra.get("threshold"),
                "input": {
                    "name": "image",
                    "dtype": "uint8",
                    "layout": "NCHW",
                    "channels": data.in_chans,
                    "height": data.image_size,
                    "width": data.image_size,
                },
                "preprocessing": {
                    "in_graph": [
                        "cast to float",
                        "scale 1/255",
                        "normalise mean/std",
                        "temperature",
                        "softmax" if not data.multilabel else "sigmoid",
                    ],
                    "outside_graph": [
                        "decode PNG/JPEG/TIFF/BMP/DICOM",
                        "DICOM modality LUT then VOI LUT/window",
                        "MONOCHROME1 inversion",
                        "to 8-bit",
                        f"{'grayscale' if data.in_chans == 1 else 'RGB'}",
                        f"resize bilinear to {data.image_size}x{data.image_size}",
                    ],
                    "window": list(data.window) if data.window else None,
                    "mean": list(config["mean"]),
                    "std": list(config["std"]),
                },
            },
        )

    # ------------------------------------------------------- runtime (no torch)
    def predict(self, model: Any, path: Path, options: dict[str, Any]) -> Any:
        from .runtime import predict_folder

        return predict_folder(model, Path(path), options)

    def evaluate(self, model: Any, path: Path, options: dict[str, Any]) -> dict[str, Any]:
        from .runtime import evaluate_folder

        return evaluate_folder(model, Path(path), options)

    # ------------------------------------------------------------- pretrain
    def pretrain_task(self, spec: Any, path: Path, options: dict[str, Any]) -> Any:
        """SimCLR on unlabelled scans (``--method simclr``) or supervised on a labelled source."""
        from .pretrain import pretrain_task

        return pretrain_task(spec, Path(path), options)

    # --------------------------------------------------------------- report
    def report(
        self, run_dir: Path, metrics: dict[str, Any], data: Any, model: Any
    ) -> list[ReportSection]:
        from .reporting import report_sections

        return report_sections(run_dir, metrics, data, model)


def _gather(outputs: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    logits = np.concatenate([o["logits"].numpy() for o in outputs]).astype(np.float64)
    targets = np.concatenate([o["targets"].numpy() for o in outputs])
    return logits, targets


def _make_loss(data: Any, label_smoothing: float) -> Any:
    import torch
    from torch import nn

    if data.multilabel:
        return nn.BCEWithLogitsLoss()
    weight = torch.tensor(data.class_weights, dtype=torch.float32) if data.class_weights else None
    loss = nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)

    def compute(logits: Any, targets: Any) -> Any:
        if loss.weight is not None and loss.weight.device != logits.device:
            loss.to(logits.device)
        return loss(logits.float(), targets)

    return compute
