"""Score medical images with a tl model.onnx — onnxruntime, numpy, Pillow and pydicom only.

    python medical.py MODEL.onnx IMAGE_OR_FOLDER [OUT.csv]

Every step from a file to the graph's uint8 ``image`` follows the model's metadata
(``preprocessing.pipeline``: DICOM modality LUT, VOI window or LUT, MONOCHROME1, 8-bit
rounding, channels, resize); normalisation, temperature and softmax are in the graph.
Writes ``item,predicted,p_<label>…`` rows like `tl predict` (to stdout without OUT.csv).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

EXTENSIONS = {".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def load(model_path: str) -> tuple[ort.InferenceSession, dict]:
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["tl"])
    if meta["preprocessing"]["pipeline"]["version"] != 1:
        raise SystemExit("this client knows pipeline version 1 only")
    return session, meta


def is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    with open(path, "rb") as fh:
        return fh.read(132)[128:132] == b"DICM"


# ----------------------------------------------------------------- DICOM
def to_uint8(unit: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(x)), float(np.max(x))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(x.shape)
    return (x - lo) / (hi - lo)


def window(x: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """The DICOM VOI functions, as ``pipeline.dicom.grayscale[voi].functions`` writes them."""
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR":
        center, width = center - 0.5, width - 1.0
    elif function != "LINEAR_EXACT":
        raise SystemExit(f"unknown VOI function {function}")
    if width <= 0:
        return (x > center).astype(np.float64)
    return np.clip((x - center) / width + 0.5, 0.0, 1.0)


def first(value) -> float | None:
    if value is None or value == "":
        return None
    if not isinstance(value, (int, float, str)):
        value = value[0]
    return float(value)


def voi(x: np.ndarray, ds, step: dict) -> np.ndarray:
    from pydicom.pixels import apply_voi_lut

    for method in step["order"]:
        if method == "window" and step["window"]:
            center, width = step["window"]
            return window(x, center, width, step["window_function"])
        if method == "voi_lut_sequence" and ds.get("VOILUTSequence"):
            item = ds.VOILUTSequence[0]
            if item.get("LUTDescriptor") is not None and item.get("LUTData") is not None:
                out = apply_voi_lut(np.rint(x).astype(np.int64), ds, prefer_lut=True)
                return out.astype(np.float64) / float(2 ** int(item.LUTDescriptor[2]) - 1)
        if method == "window_center_width":
            center, width = first(ds.get("WindowCenter")), first(ds.get("WindowWidth"))
            if center is not None and width is not None and width > 0:
                function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
                return window(x, center, width, function)
        if method == "minmax":
            return minmax(x)
    raise SystemExit("no VOI method applies")


def read_dicom(path: Path, spec: dict) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    try:
        ds = pydicom.dcmread(path)
    except pydicom.errors.InvalidDicomError:
        ds = pydicom.dcmread(path, force=True)
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1 and arr.ndim == (3 if samples == 1 else 4):
        arr = arr[frames // 2]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if samples > 1 or arr.ndim == 3:  # spec["colour"]
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr)
        if np.issubdtype(arr.dtype, np.integer):
            bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
            return to_uint8(arr.astype(np.float64) / float(2**bits - 1))
        return to_uint8(minmax(arr.astype(np.float64)))
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return to_uint8(
            rgb.astype(np.float64) / float(2 ** (8 if rgb.dtype == np.uint8 else 16) - 1)
        )
    y = None
    for step in spec["grayscale"]:
        if step["step"] == "modality_lut":
            y = apply_modality_lut(arr, ds).astype(np.float64)
        elif step["step"] == "voi":
            y = voi(y, ds, step)
        elif step["step"] == "monochrome1" and photometric == "MONOCHROME1":
            y = 1.0 - y
        elif step["step"] == "to_uint8":
            y = to_uint8(y)
    return y


# ----------------------------------------------------------------- PNG, JPEG …
def read_raster(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        fmt, frames = img.format, getattr(img, "n_frames", 1)
        if frames > 1:
            img.seek(frames // 2)
        img.load()
        if fmt == "JPEG":
            img = ImageOps.exif_transpose(img)
        mode = img.mode
        if mode.startswith("I;16"):
            return to_uint8(np.asarray(img).astype(np.float64) / 65535.0)
        if mode in ("I", "F"):
            arr = np.asarray(img).astype(np.float64)
            if mode == "I" and arr.min() >= 0 and arr.max() <= 65535:
                return to_uint8(arr / 65535.0)
            return to_uint8(minmax(arr))
        if mode in ("1", "L", "LA", "La"):
            return np.asarray(img.convert("L"), dtype=np.uint8)
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
        if (
            mode in ("P", "PA")
            and (rgb[..., 0] == rgb[..., 1]).all()
            and (rgb[..., 0] == rgb[..., 2]).all()
        ):
            return np.ascontiguousarray(rgb[..., 0])
        return rgb


def model_input(pixels: np.ndarray, pipeline: dict) -> np.ndarray:
    channels, resize = pipeline["channels"]["count"], pipeline["resize"]
    image = Image.fromarray(pixels)
    if channels == 1 and image.mode != "L":
        image = image.convert("L")
    elif channels == 3 and image.mode != "RGB":
        image = image.convert("RGB")
    assert resize["method"] == "bilinear"
    image = image.resize((resize["width"], resize["height"]), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def files_of(root: Path) -> list[tuple[str, Path]]:
    if root.is_file():
        return [(root.name, root)]
    found = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and (p.suffix.lower() in EXTENSIONS or (not p.suffix and is_dicom(p)))
    )
    return [(p.relative_to(root).as_posix(), p) for p in found]


def main(model_path: str, data: str, out: str | None = None, batch: int = 32) -> None:
    session, meta = load(model_path)
    pipeline, labels = meta["preprocessing"]["pipeline"], meta["labels"]
    threshold = meta.get("threshold")
    rows = []
    files = files_of(Path(data))
    for start in range(0, len(files), batch):
        chunk = files[start : start + batch]
        images = np.stack(
            [
                model_input(
                    read_dicom(f, pipeline["dicom"]) if is_dicom(f) else read_raster(f), pipeline
                )
                for _, f in chunk
            ]
        )
        probs = dict(
            zip(
                [o.name for o in session.get_outputs()],
                session.run(None, {"image": images}),
                strict=True,
            )
        )
        for (name, _), p in zip(chunk, probs["probabilities"].astype(np.float64), strict=True):
            if meta.get("multilabel"):
                predicted = "|".join(n for n, v in zip(labels, p, strict=True) if v >= 0.5)
            elif len(labels) == 2 and threshold is not None:
                predicted = labels[int(p[1] >= threshold)]
            else:
                predicted = labels[int(p.argmax())]
            rows.append([name, predicted, *(f"{v:.9g}" for v in p)])
    with open(out, "w", newline="") if out else sys.stdout as fh:
        writer = csv.writer(fh)
        writer.writerow(["item", "predicted", *(f"p_{n}" for n in labels)])
        writer.writerows(rows)


if __name__ == "__main__":
    main(*sys.argv[1:4])
