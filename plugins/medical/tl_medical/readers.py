"""Decode one medical image file (DICOM, PNG, JPEG, TIFF, BMP) into display-ready uint8 pixels.

No torch here: ``tl predict`` uses these readers where torch is not installed.

DICOM pipeline (PS3.4 N.2): stored values → modality LUT (Rescale Slope/Intercept or a
Modality LUT Sequence) → VOI (the ``window`` argument if given, else the header's VOI LUT
Sequence or first Window Center/Width, else min–max of the image) → MONOCHROME1 inverted →
0..255. Values stay float until the VOI step. A multi-frame file yields its middle frame
(the most representative single frame of a cine / tomo stack without reading metadata that
varies by vendor).

What a reader returns never holds a patient name, birth date or raw ID: only
`hash_patient_id` of the PatientID.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from tl.core import DataError

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".dcm",
    ".dicom",
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".bmp",
)
DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom")

# A constant salt: the same PatientID always hashes to the same value (so splits stay
# grouped across runs), but the hash is not a plain sha256 of the ID that a lookup table
# of common ID formats would reverse.
_PATIENT_SALT = b"tl-medical/patient/v1:"

_FIX_CORRUPT = "re-export the file, remove it, or pass --skip-bad to skip unreadable files"


def hash_patient_id(pid: str) -> str:
    """Salted sha256 of a patient ID, 16 hex characters. Never returns the raw ID."""
    digest = hashlib.sha256(_PATIENT_SALT + str(pid).strip().encode("utf-8")).hexdigest()
    return digest[:16]


def has_dicom_preamble(path: Path) -> bool:
    """True when the file has the 128-byte preamble followed by ``DICM`` (PS3.10 7.1)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_dicom_path(path: Path) -> bool:
    return path.suffix.lower() in DICOM_EXTENSIONS or (
        path.suffix.lower() not in IMAGE_EXTENSIONS and has_dicom_preamble(path)
    )


def is_image_path(path: Path) -> bool:
    """A file ``read_image`` can read: a known extension, or any file with a DICOM preamble."""
    return path.suffix.lower() in IMAGE_EXTENSIONS or has_dicom_preamble(path)


def read_image(
    path: str | Path, window: tuple[float, float] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Pixels as uint8 ``(H, W)`` (grayscale) or ``(H, W, 3)`` (RGB), and facts about them.

    ``window=(center, width)`` overrides the DICOM header's VOI (grayscale DICOM only).
    ``info`` has ``format``, ``modality`` (DICOM Modality or None), ``photometric``,
    ``hashed_patient_id`` (or None), ``source_bits``, ``window`` (what was applied:
    ``[center, width]``, ``"voi_lut"``, ``"minmax"`` or None) and ``frames``.
    Raises `DataError` for a missing, unreadable, corrupt or unsupported file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("image file not found", path, "check the path or the manifest row")
    if not path.is_file():
        raise DataError("not a file", path, "point at an image file")
    if is_dicom_path(path):
        return _read_dicom(path, window)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return _read_pillow(path)
    raise DataError(
        f"unsupported image type {path.suffix or '(no extension)'!r}",
        path,
        f"use one of {', '.join(IMAGE_EXTENSIONS)} (or a DICOM file with a DICM preamble)",
    )


# --------------------------------------------------------------------------- pillow


def _read_pillow(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            fmt = img.format
            n_frames = getattr(img, "n_frames", 1)
            if n_frames > 1:
                img.seek(n_frames // 2)
            img.load()
            if fmt == "JPEG":  # camera photos (dermoscopy, fundus) may carry a rotation
                img = ImageOps.exif_transpose(img)
            pixels, bits, photometric = _pillow_to_uint8(img)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot decode image: {_short(exc)}", path, _FIX_CORRUPT) from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"image too large: {_short(exc)}", path, "downscale it") from None
    info = {
        "format": fmt,
        "modality": None,
        "photometric": photometric,
        "hashed_patient_id": None,
        "source_bits": bits,
        "window": None,
        "frames": n_frames,
    }
    return pixels, info


def _pillow_to_uint8(img: Any) -> tuple[np.ndarray, int, str]:
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        # map the whole 16-bit range onto 0..255; PIL's convert("L") would clip at 255
        arr = np.asarray(img).astype(np.float64)
        return _to_uint8(arr / 65535.0), 16, "MONOCHROME2"
    if mode in ("I", "F"):
        arr = np.asarray(img).astype(np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if mode == "I" and lo >= 0 and hi <= 65535:
            # 32-bit container of 16-bit data (older Pillow, some TIFF writers)
            return _to_uint8(arr / 65535.0), 16, "MONOCHROME2"
        return _to_uint8(_minmax(arr)), 32, "MONOCHROME2"
    if mode == "1":
        return np.asarray(img.convert("L"), dtype=np.uint8), 1, "MONOCHROME2"
    if mode == "L":
        return np.asarray(img, dtype=np.uint8), 8, "MONOCHROME2"
    if mode == "LA" or mode == "La":
        return np.asarray(img.convert("L"), dtype=np.uint8), 8, "MONOCHROME2"
    if mode in ("P", "PA"):
        rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
        if _is_gray(rgb):
            return np.ascontiguousarray(rgb[..., 0]), 8, "MONOCHROME2"
        return rgb, 8, "RGB"
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)  # RGB, RGBA, CMYK, YCbCr, LAB …
    return rgb, 8, "RGB"


def _is_gray(rgb: np.ndarray) -> bool:
    return bool(
        np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    )


# ---------------------------------------------------------------------------- DICOM


_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # (Float/DoubleFloat) Pixel Data
_UNDEFINED_LENGTH = 0xFFFFFFFF


def read_dicom_header(path: Path) -> Any:
    """The DICOM dataset with its pixel data left on disk (fast), checked for damage.

    Raises `DataError` when the header is corrupt, the file has no pixel data (a report,
    or a file cut short before it), or the pixel data runs past the end of the file.
    Pixel data is *deferred* rather than skipped (``stop_before_pixels``) so that its
    declared length can be checked against the file size without reading it.
    """
    path = Path(path)
    ds = _dcmread(path, defer_size=1024)
    check_dicom_header(ds, path)
    return ds


def check_dicom_header(ds: Any, path: Path) -> None:
    """`DataError` unless ``ds`` describes an image whose pixel data fits in the file."""
    element = next((ds.get_item(tag) for tag in _PIXEL_TAGS if tag in ds), None)
    if element is None:
        raise DataError(
            "DICOM file has no pixel data (cut short, or a report / presentation state?)",
            path,
            "remove it from the data folder or list only image files in the manifest",
        )
    if "Rows" not in ds or "Columns" not in ds:
        raise DataError("DICOM header has no Rows/Columns", path, _FIX_CORRUPT)
    length = getattr(element, "length", None)
    tell = getattr(element, "value_tell", None)
    if length not in (None, _UNDEFINED_LENGTH) and tell is not None:
        size = path.stat().st_size
        if tell + length > size:
            raise DataError(
                f"DICOM file is truncated: pixel data needs {tell + length} bytes, "
                f"the file has {size}",
                path,
                _FIX_CORRUPT,
            )


def _dcmread(path: Path, defer_size: int | None = None) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, defer_size=defer_size)
            except InvalidDicomError:
                # a .dcm without the 128-byte preamble ("raw" dataset): accept it only if
                # parsing yields something that looks like an image header
                ds = pydicom.dcmread(path, defer_size=defer_size, force=True)
                if "SOPClassUID" not in ds and "Rows" not in ds:
                    raise InvalidDicomError("no DICOM preamble and no image header") from None
            # convert every element but the pixel data now, so that a garbled header
            # fails here and not in the middle of training
            _touch(ds)
    except DataError:
        raise
    except Exception as exc:  # pydicom raises assorted types on garbage (struct.error, …)
        raise DataError(f"unreadable DICOM: {_short(exc)}", path, _FIX_CORRUPT) from None
    return ds


def _touch(ds: Any) -> None:
    for tag in list(ds.keys()):
        if tag in _PIXEL_TAGS:
            continue
        element = ds[tag]
        if element.VR == "SQ":
            for item in element.value:
                _touch(item)


def _read_dicom(
    path: Path, window: tuple[float, float] | None
) -> tuple[np.ndarray, dict[str, Any]]:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = _dcmread(path)
    check_dicom_header(ds, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except Exception as exc:
        transfer = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        fix = _FIX_CORRUPT
        what = f"cannot decode DICOM pixel data: {_short(exc)}"
        if "less than expected" in str(exc):
            what = "DICOM pixel data is shorter than its header says (truncated file?)"
        elif _is_compressed(transfer) and (
            "missing dependencies" in str(exc).lower() or not _decoders_installed()
        ):
            fix = (
                f"the pixel data is compressed ({getattr(transfer, 'name', transfer)}) and no "
                "decoder is installed: pip install pylibjpeg pylibjpeg-libjpeg "
                "pylibjpeg-openjpeg (tl-medical's dependencies), or re-export it uncompressed"
            )
        elif "plugin" in str(exc).lower() or "decod" in str(exc).lower():
            fix = (
                f"its compressed pixel data ({getattr(transfer, 'name', transfer)}) is damaged: "
                "re-export the file (uncompressed if the sender can), or remove it"
            )
        raise DataError(what, path, fix) from None

    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if n_frames > 1 and arr.ndim == (3 if samples == 1 else 4):
        arr = arr[n_frames // 2]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    modality = str(ds.get("Modality", "")) or None
    pid = str(ds.get("PatientID", "") or "").strip()
    info: dict[str, Any] = {
        "format": "DICOM",
        "modality": modality,
        "photometric": photometric,
        "hashed_patient_id": hash_patient_id(pid) if pid else None,
        "source_bits": bits,
        "window": None,
        "frames": n_frames,
    }

    if samples > 1 or arr.ndim == 3:
        # colour: pydicom already converted YBR to RGB; only the bit depth is scaled
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr), info
        if np.issubdtype(arr.dtype, np.integer):
            return _to_uint8(arr.astype(np.float64) / float(2**bits - 1)), info
        return _to_uint8(_minmax(arr.astype(np.float64))), info

    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(arr, ds)
        depth = 8 if rgb.dtype == np.uint8 else 16
        return _to_uint8(rgb.astype(np.float64) / float(2**depth - 1)), info

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = apply_modality_lut(arr, ds).astype(np.float64)
            scaled, applied = _apply_window(values, ds, window, apply_voi_lut)
    except (ValueError, TypeError, IndexError, AttributeError, NotImplementedError) as exc:
        raise DataError(
            f"cannot apply the DICOM modality/VOI LUT: {_short(exc)}",
            path,
            "pass an explicit window=(center, width) or fix the header",
        ) from None
    info["window"] = applied
    if photometric == "MONOCHROME1":  # higher values are darker: invert after windowing
        scaled = 1.0 - scaled
    return _to_uint8(scaled), info


def _is_compressed(transfer: Any) -> bool:
    """Whether the transfer syntax UID compresses pixel data (False for no UID or for one
    that is not a transfer syntax, which pydicom refuses to classify)."""
    try:
        return bool(getattr(transfer, "is_compressed", False))
    except ValueError:
        return False


def _decoders_installed() -> bool:
    """pylibjpeg's JPEG/JPEG-LS (libjpeg) and JPEG 2000 (openjpeg) decoders for pydicom."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(name) is not None for name in ("libjpeg", "openjpeg"))
    except (ImportError, ValueError):
        return False


def _apply_window(
    values: np.ndarray, ds: Any, window: tuple[float, float] | None, apply_voi_lut: Any
) -> tuple[np.ndarray, Any]:
    """Modality values → floats in 0..1 and what was applied."""
    if window is not None:
        center, width = float(window[0]), float(window[1])
        return _linear_window(values, center, width), [center, width]
    if ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        if item.get("LUTDescriptor") is not None and item.get("LUTData") is not None:
            depth = int(item.LUTDescriptor[2])
            out = apply_voi_lut(np.rint(values).astype(np.int64), ds, prefer_lut=True)
            return out.astype(np.float64) / float(2**depth - 1), "voi_lut"
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        if function == "SIGMOID":
            return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width)), [center, width]
        if function == "LINEAR_EXACT":
            return _linear_window(values, center, width, exact=True), [center, width]
        return _linear_window(values, center, width), [center, width]
    return _minmax(values), "minmax"


def _linear_window(
    values: np.ndarray, center: float, width: float, exact: bool = False
) -> np.ndarray:
    """DICOM LINEAR window (PS3.3 C.11.2.1.2.1) onto 0..1: x ≤ c − w/2 → 0, x ≥ c + w/2 → 1.

    Same formula as ``pydicom.pixels.apply_windowing`` but onto 0..1 instead of the
    stored-value range, so a window override needs no edits to the dataset.
    """
    if not exact:
        if width < 1:
            raise ValueError(f"window width must be ≥ 1 for a LINEAR window, got {width}")
        center, width = center - 0.5, width - 1.0
    if width <= 0:  # a width-1 LINEAR window is a threshold at c − 0.5
        return (values > center).astype(np.float64)
    return np.clip((values - center) / width + 0.5, 0.0, 1.0)


def _first(value: Any) -> float | None:
    """First value of a possibly multi-valued DS element."""
    if value is None or value == "":
        return None
    if not isinstance(value, (int, float, str)):  # MultiValue, list
        try:
            value = value[0]
        except (TypeError, IndexError):
            return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------------------- helpers


def _minmax(arr: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.zeros(arr.shape, dtype=np.float64)
    return (arr - lo) / (hi - lo)


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    """Floats in 0..1 → uint8 0..255 (rounded)."""
    return np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
