"""Generated chest radiographs in the formats a hospital export really has (no torch).

Three classes — ``normal``, ``nodule``, ``effusion`` — one subfolder per class. Most images
are 16-bit DICOM (DX/CR, MONOCHROME2 and a few MONOCHROME1, 12- or 16-bit stored values,
non-identity rescale on some, a correct Window Center/Width, synthetic PatientID / name /
birth date); the rest are 8-bit PNG exports. A patient has 2–4 DICOM images (follow-ups
that share the patient's anatomy, lesion and class); a PNG is an anonymised export of one
image, so it is its own patient.

Realism that matters for the tests built on it:

* anatomy (lungs, mediastinum, heart, ribs, clavicles, diaphragm domes) and the acquisition
  (exposure, gamma, noise, positioning) vary per image, so the mean intensity does **not**
  separate the classes — only the lesion does;
* lesions are subtle but learnable: nodules are 1–3 soft round opacities (radius 4–9 px at
  256) inside a lung field, an effusion is a meniscus-shaped opacity that blunts one
  costophrenic angle; ``lesion_contrast`` scales both;
* ``style`` switches the scanner look (``"standard"`` PA chest room vs ``"portable"`` AP
  bedside: other noise, contrast, field of view, rotation, collimation) for transfer tests.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tl.core import DataError

from .anatomy import CLASSES, DEFAULT_LESION_CONTRAST, STYLES, Style, generate_case, sample_patient

__all__ = [
    "CLASSES",
    "DEFAULT_LESION_CONTRAST",
    "SIZES",
    "STYLES",
    "Style",
    "generate_case",
    "sample_patient",
    "write_dataset",
    "write_demo",
    "write_dicom",
]

SIZES: dict[str, int] = {"small": 100, "full": 500}  # images per class

_FIRST = ["ALEX", "SAM", "ROBIN", "KIM", "JORDAN", "CASEY", "RILEY", "MORGAN", "TAYLOR", "JESSE"]
_LAST = ["SYNTHWOOD", "FAKEMAN", "DEMOLSKI", "TESTARD", "SAMPLEY", "MOCKETT", "PLACEHOLT"]


# --------------------------------------------------------------------------- writers


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    bits_stored: int = 16,
    photometric: str = "MONOCHROME2",
    slope: float = 1.0,
    intercept: float = 0.0,
    window: tuple[float, float] | list[tuple[float, float]] | None = None,
    modality: str = "DX",
    patient_id: str = "",
    patient_name: str = "",
    birth_date: str = "",
    extra: dict[str, Any] | None = None,
    uid_seed: str | None = None,
) -> None:
    """Write an uncompressed grayscale DICOM of ``stored`` (uint16 stored values).

    ``window`` is ``(center, width)`` in modality units or a list of them (multi-valued).
    Used by the demo and by tests that need a file with known values. ``uid_seed`` makes the
    UIDs deterministic (``generate_uid`` hashes it), so a seeded demo is byte-for-byte
    reproducible; without it they are random.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        ComputedRadiographyImageStorage,
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        generate_uid,
    )

    stored = np.asarray(stored)
    if stored.ndim != 2:
        raise ValueError("write_dicom writes one grayscale frame (2-D array)")
    if stored.min() < 0 or stored.max() > 2**bits_stored - 1:
        raise ValueError(f"stored values do not fit in {bits_stored} bits")
    sop_class = (
        ComputedRadiographyImageStorage
        if modality == "CR"
        else DigitalXRayImageStorageForPresentation
    )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class

    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=[uid_seed, kind]) if uid_seed else generate_uid()

    meta.MediaStorageSOPInstanceUID = uid("instance")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    now = _dt.datetime(2024, 1, 1)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.Modality = modality
    ds.StudyDate = now.strftime("%Y%m%d")
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = birth_date
    ds.BodyPartExamined = "CHEST"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [0.15 * 2048 / stored.shape[0]] * 2
    if slope != 1.0 or intercept != 0.0 or modality in ("DX", "CR"):
        ds.RescaleSlope = _ds(slope)
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleType = "US"
    if window is not None:
        windows = [window] if isinstance(window, tuple) else list(window)
        ds.WindowCenter = [_ds(c) for c, _ in windows] if len(windows) > 1 else _ds(windows[0][0])
        ds.WindowWidth = [_ds(w) for _, w in windows] if len(windows) > 1 else _ds(windows[0][1])
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(stored.astype("<u2")).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _ds(value: float) -> str:
    """A DS string (≤ 16 chars)."""
    text = f"{value:.6g}"
    return text if len(text) <= 16 else f"{value:.4e}"


def _write_case_dicom(
    path: Path,
    image: np.ndarray,
    rng: np.random.Generator,
    patient: dict[str, Any],
    uid_seed: str | None = None,
) -> None:
    """Store display values ``image`` (0..1) so that the header window reproduces them."""
    bits = int(rng.choice([12, 16], p=[0.6, 0.4]))
    top = 2**bits - 1
    monochrome1 = rng.random() < 0.15
    slope, intercept = (1.0, 0.0)
    r = rng.random()
    if r < 0.25:
        slope, intercept = 0.5, -1024.0
    elif r < 0.4:
        slope, intercept = 2.0, 100.0
    # the detector range is wider than the useful window: values beyond it are clipped
    span = rng.uniform(0.55, 0.8) * top
    lo_stored = rng.uniform(0.05, 0.95 * top - span - 1)
    shown = 1.0 - image if monochrome1 else image
    stored = np.rint(lo_stored + shown.astype(np.float64) * span)
    stored = np.clip(stored, 0, top).astype(np.uint16)
    # LINEAR window mapping lo → 0 and hi → 1 (PS3.3 C.11.2.1.2.1): w = hi − lo + 1 (modality units)
    lo, hi = lo_stored * slope + intercept, (lo_stored + span) * slope + intercept
    width, center = hi - lo + 1.0, 0.5 * (lo + hi) + 0.5
    windows: Any = (center, width)
    if rng.random() < 0.2:  # a second, "bone" window after the default one
        windows = [(center, width), (center + 0.2 * width, 0.5 * width)]
    write_dicom(
        path,
        stored,
        bits_stored=bits,
        photometric="MONOCHROME1" if monochrome1 else "MONOCHROME2",
        slope=slope,
        intercept=intercept,
        window=windows,
        modality=patient["modality"],
        patient_id=patient["id"],
        patient_name=patient["name"],
        birth_date=patient["birth_date"],
        extra={"ViewPosition": patient["view"], "PatientSex": patient["sex"]},
        uid_seed=uid_seed,
    )


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.rint(image * 255.0).astype(np.uint8), mode="L").save(path)


def _group_sizes(rng: np.random.Generator, n: int) -> list[int]:
    """Split ``n`` images into patients of 2–4 images (1 only when n == 1)."""
    sizes: list[int] = []
    rest = n
    while rest > 0:
        if rest <= 4:
            s = rest
        else:
            s = int(rng.integers(2, 5))
            if rest - s == 1:
                s = s - 1 if s > 2 else s + 1
        sizes.append(s)
        rest -= s
    return sizes


def write_dataset(
    out_dir: Path,
    n_per_class: dict[str, int],
    seed: int = 0,
    dicom_fraction: float = 0.85,
    lesion_contrast: float = DEFAULT_LESION_CONTRAST,
    style: str | Style = "standard",
    image_size: int = 256,
) -> Path:
    """Write ``out_dir/<class>/*.dcm|*.png`` and return ``out_dir``.

    Each class gets ``n_per_class[c]`` images: ``round(n * (1 - dicom_fraction))`` single-image
    PNG patients, the rest DICOM patients with 2–4 images each. File names are shuffled
    numbers (``cxr_00042.dcm``) that reveal neither the class nor the patient. Refuses a
    non-empty ``out_dir``; writes into a temporary sibling first and renames it at the end.
    """
    out_dir = Path(out_dir)
    unknown = set(n_per_class) - set(CLASSES)
    if unknown:
        raise ValueError(f"unknown demo classes {sorted(unknown)}; choose from {CLASSES}")
    if isinstance(style, str) and style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose from {sorted(STYLES)}")
    _check_empty(out_dir)
    rng = np.random.default_rng(seed)

    plan: list[tuple[str, dict[str, Any], bool]] = []  # (class, patient, is_png)
    ids = iter(range(int(rng.integers(10**6, 5 * 10**6)), 10**7))  # unique PatientIDs
    for label, n in n_per_class.items():
        n_png = min(n, int(round(n * (1.0 - dicom_fraction))))
        for size in _group_sizes(rng, n - n_png):
            patient = _patient_record(rng, label, next(ids))
            plan += [(label, patient, False)] * size
        for _ in range(n_png):
            plan.append((label, _patient_record(rng, label, next(ids)), True))
    numbers = rng.permutation(len(plan))
    # deterministic UIDs: same arguments → byte-identical files; other arguments → other UIDs
    uid_base = repr((seed, sorted(n_per_class.items()), style, lesion_contrast, dicom_fraction,
                     image_size))  # fmt: skip

    tmp = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        for label in n_per_class:
            (tmp / label).mkdir(parents=True)
        for k, (label, patient, is_png) in enumerate(plan):
            image = generate_case(
                rng,
                label,
                image_size,
                lesion_contrast=lesion_contrast,
                style=style,
                patient=patient["anatomy"],
            )
            name = f"cxr_{numbers[k]:05d}"
            if is_png:
                _write_png(tmp / label / f"{name}.png", image)
            else:
                uid_seed = f"{uid_base}|{name}"
                _write_case_dicom(tmp / label / f"{name}.dcm", image, rng, patient, uid_seed)
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _patient_record(rng: np.random.Generator, label: str, number: int) -> dict[str, Any]:
    birth = _dt.date(1935, 1, 1) + _dt.timedelta(days=int(rng.integers(0, 365 * 70)))
    return {
        "id": f"TLD{number:07d}",
        "name": f"{rng.choice(_LAST)}^{rng.choice(_FIRST)}",
        "birth_date": birth.strftime("%Y%m%d"),
        "sex": str(rng.choice(["F", "M"])),
        "modality": str(rng.choice(["DX", "CR"], p=[0.7, 0.3])),
        "view": "PA",
        "anatomy": sample_patient(rng, label),
    }


def write_demo(out_dir: Path, size: str = "small", seed: int = 0) -> Path:
    """The demo dataset: ``small`` (300 images, for tests) or ``full`` (1500)."""
    if size not in SIZES:
        raise DataError(
            f"unknown demo size {size!r}", "--size", f"choose one of {', '.join(SIZES)}"
        )
    n = SIZES[size]
    return write_dataset(Path(out_dir), {c: n for c in CLASSES}, seed=seed)


def _check_empty(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(
            "output folder exists and is not empty",
            out_dir,
            "choose a new folder; the demo never overwrites existing data",
        )
