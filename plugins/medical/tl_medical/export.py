"""What goes into model.onnx: uint8 pixels in; normalisation, temperature and softmax inside."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


class ExportModule(nn.Module):
    def __init__(self, model: nn.Module, temperature: float, multilabel: bool) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.multilabel = multilabel

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(image)
        scaled = logits / self.temperature
        probabilities = torch.sigmoid(scaled) if self.multilabel else torch.softmax(scaled, dim=1)
        return logits, probabilities


def real_batches(
    dataset: Any, batch_size: int = 16, max_batches: int = 4
) -> list[dict[str, np.ndarray]]:
    """Un-augmented test images as the runtime feeds them (last batch may be smaller)."""
    images = dataset.images.numpy()
    batches = []
    for start in range(0, min(len(images), batch_size * max_batches), batch_size):
        batches.append({"image": np.ascontiguousarray(images[start : start + batch_size])})
    return batches


#: version of `PIPELINE`'s layout; a client that knows another version must refuse the model
PIPELINE_VERSION = 1


def pipeline(window: tuple[float, float] | None, channels: int, size: int) -> dict[str, Any]:
    """How a file becomes the graph's uint8 ``image``, exactly as `readers.read_image` and
    `preprocess.to_model_input` do it, machine-readably (``examples/deploy/medical.py``
    follows it to the pixel): every step names its library call or formula."""
    return {
        "version": PIPELINE_VERSION,
        "dicom": {
            "library": "pydicom",
            "detect": "extension .dcm/.dicom, or bytes 128..131 == b'DICM'",
            "frame": "pixel_array[NumberOfFrames // 2] when NumberOfFrames > 1",
            "grayscale": [
                {"step": "modality_lut",
                 "call": "pydicom.pixels.apply_modality_lut(pixel_array, ds).astype(float64)"},
                {"step": "voi", "window": list(window) if window else None,
                 "order": ["window", "voi_lut_sequence", "window_center_width", "minmax"],
                 "voi_lut_sequence": {
                     "when": "VOILUTSequence[0] has LUTDescriptor and LUTData",
                     "call": "pydicom.pixels.apply_voi_lut(rint(x).astype(int64), ds, "
                             "prefer_lut=True)",
                     "scale": "y = out / (2 ** LUTDescriptor[2] - 1)"},
                 "window_center_width": {
                     "when": "first values of WindowCenter and WindowWidth, width > 0",
                     "function": "VOILUTFunction (default LINEAR)"},
                 "functions": {
                     "LINEAR": "c' = c - 0.5; w' = w - 1; y = clip((x - c') / w' + 0.5, 0, 1); "
                               "y = (x > c') when w' <= 0",
                     "LINEAR_EXACT": "y = clip((x - c) / w + 0.5, 0, 1); y = (x > c) when w <= 0",
                     "SIGMOID": "y = 1 / (1 + exp(-4 * (x - c) / w))"},
                 "window_function": "LINEAR",
                 "minmax": "y = (x - min(x)) / (max(x) - min(x)); y = 0 when max <= min"},
                {"step": "monochrome1",
                 "rule": "y = 1 - y when PhotometricInterpretation == 'MONOCHROME1'"},
                {"step": "to_uint8", "formula": "rint(clip(y, 0, 1) * 255)"},
            ],
            "colour": {
                "when": "SamplesPerPixel > 1 (pydicom converts YBR to RGB)",
                "uint8": "as decoded",
                "integer": "to_uint8(x / (2 ** BitsStored - 1))",
                "float": "to_uint8(minmax(x))",
                "palette": "to_uint8(pydicom.pixels.apply_color_lut(x, ds) / (2 ** d - 1)), "
                           "d = 8 for uint8 output else 16"},
        },
        "raster": {
            "library": "Pillow",
            "frame": "seek(n_frames // 2) when n_frames > 1",
            "jpeg": "PIL.ImageOps.exif_transpose",
            "modes": {
                "I;16 I;16L I;16B I;16N": "to_uint8(x / 65535)",
                "I": "to_uint8(x / 65535) when 0 <= x <= 65535, else to_uint8(minmax(x))",
                "F": "to_uint8(minmax(x))",
                "1 L LA La": "convert('L')",
                "P PA": "convert('RGB'); one channel (R) when R == G == B everywhere",
                "other": "convert('RGB')"},
        },
        "to_uint8": {"formula": "rint(clip(y, 0, 1) * 255)",
                     "rounding": "numpy.rint: half to even"},
        "channels": {"count": int(channels),
                     "rule": "PIL.Image.fromarray(pixels), then convert('L') when count is 1 "
                             "and mode is not 'L', convert('RGB') when count is 3 and mode is "
                             "not 'RGB'"},
        "resize": {"library": "Pillow", "method": "bilinear",
                   "call": "PIL.Image.Image.resize((width, height), "
                           "PIL.Image.Resampling.BILINEAR)",
                   "width": int(size), "height": int(size), "aspect": "not kept"},
        "layout": {"dtype": "uint8", "order": "NCHW", "batch": "numpy.stack of (C, H, W)"},
    }  # fmt: skip


def export_metadata(data: Any, model: Any) -> dict[str, Any]:
    """The tl metadata of a medical model: the ``image`` input, what the graph does and
    the exact way outside it from a file to its pixels (`pipeline`)."""
    from tl.core import input_entry

    config = model.data_config
    window = tuple(data.window) if data.window else None
    channels, size = int(data.in_chans), int(data.image_size)
    return {
        "multilabel": data.multilabel,
        "inputs": [
            input_entry(
                "image",
                "image",
                "file",
                dtype="uint8",
                shape=["batch", channels, size, size],
                pipeline="preprocessing.pipeline",
            )  # fmt: skip
        ],
        "input": {
            "name": "image",
            "dtype": "uint8",
            "layout": "NCHW",
            "channels": channels,
            "height": size,
            "width": size,
        },
        "outputs": {
            "logits": "float32 [batch, classes]",
            "probabilities": "float32 [batch, classes]: softmax (multi-label: sigmoid) of "
            "logits / temperature",
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
                f"{'grayscale' if channels == 1 else 'RGB'}",
                f"resize bilinear to {size}x{size}",
            ],
            "pipeline": pipeline(window, channels, size),
            "window": list(window) if window else None,
            "mean": list(config["mean"]),
            "std": list(config["std"]),
        },
    }
