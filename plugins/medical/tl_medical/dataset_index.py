"""Find the labelled images of a medical dataset and split them by patient (no torch).

Two layouts:

* **class folders** — ``root/<class>/…/image`` (files found recursively in each class dir);
* **manifest** — a CSV (``--data file.csv``, or ``root/manifest.csv``) with columns
  ``path,label[,patient_id][,split]``; paths relative to the manifest's folder, multi-label
  written ``a|b``, split one of ``train/val/test`` (empty: let tl decide).

`scan` reads no pixels (fast): it checks that each file exists and that its header can be
read (a corrupt DICOM header or a non-image is caught here); `verify` decodes every image
when a run wants to fail early. Patients come from the manifest's ``patient_id`` column or
the DICOM PatientID, and are only ever kept hashed.

`tl_medical.splits.assign_splits` then fills in the missing ``split`` values.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tl.core import DataError

from .readers import (
    IMAGE_EXTENSIONS,
    hash_patient_id,
    is_dicom_path,
    is_image_path,
    read_dicom_header,
    read_image,
)
from .splits import check_class_counts

MANIFEST_NAME = "manifest.csv"
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
COLUMNS = ["path", "item", "labels", "patient", "split"]


@dataclass
class IndexResult:
    """What `scan` found.

    ``frame``: one row per image — ``path`` (absolute), ``item`` (relative to ``root``, as in
    splits.csv), ``labels`` (list of str), ``patient`` (hashed or None), ``split`` (given or
    None). ``skipped``: ``(item, reason)`` for every file left out under ``skip_bad``.
    ``ignored``: files in class folders that are not images (README, .txt …), reported, not
    read.
    """

    frame: pd.DataFrame
    labels: list[str]
    multilabel: bool
    skipped: list[tuple[str, str]] = field(default_factory=list)
    root: Path = Path(".")
    layout: str = "folders"
    ignored: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """Counts for the report (no identifiers: patients are hashed and only counted)."""
        first = self.frame["labels"].map(lambda ls: ls[0]) if len(self.frame) else pd.Series()
        return {
            "layout": self.layout,
            "n_images": len(self.frame),
            "n_patients": int(self.frame["patient"].nunique()),
            "images_without_patient": int(self.frame["patient"].isna().sum()),
            "labels": list(self.labels),
            "multilabel": self.multilabel,
            "per_class": {c: int((first == c).sum()) for c in self.labels},
            "skipped": len(self.skipped),
            "ignored_files": len(self.ignored),
        }


# ------------------------------------------------------------------------------ scan


def scan(path: Path, skip_bad: bool = False) -> IndexResult:
    """Index a class-folder tree or a CSV manifest. See the module docstring."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(
            "data path not found", path, "check --data: a folder of class subfolders or a CSV"
        )
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DataError(
                "--data is a single file, not a dataset",
                path,
                "pass a folder with one subfolder per class, or a CSV manifest (path,label)",
            )
        result = _scan_manifest(path, skip_bad)
    elif (path / MANIFEST_NAME).is_file():
        result = _scan_manifest(path / MANIFEST_NAME, skip_bad)
    else:
        result = _scan_folders(path, skip_bad)
    _check_classes(result)
    return result


def _scan_folders(root: Path, skip_bad: bool) -> IndexResult:
    root = root.resolve()
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    class_dirs = [p for p in entries if p.is_dir()]
    loose = [p for p in entries if p.is_file() and is_image_path(p)]
    if not class_dirs:
        if loose:
            raise DataError(
                f"{len(loose)} images are not sorted into class folders",
                root,
                "put each class in its own subfolder (e.g. normal/, nodule/) or add a "
                f"{MANIFEST_NAME} with path,label columns",
            )
        raise DataError(
            "the data folder has no class subfolders and no images",
            root,
            "put each class's images in its own subfolder, or add a manifest.csv",
        )
    skipped: list[tuple[str, str]] = []
    if loose:
        if not skip_bad:
            raise DataError(
                f"{len(loose)} images lie next to the class folders, in no class "
                f"(first: {loose[0].name})",
                root,
                "move them into a class subfolder, or pass --skip-bad to leave them out",
            )
        skipped += [(p.name, "not inside a class folder") for p in loose]

    rows: list[dict[str, Any]] = []
    ignored = [p.name for p in entries if p.is_file() and not is_image_path(p)]
    empty: list[Path] = []
    for class_dir in class_dirs:
        n_before = len(rows)
        for f in _walk(class_dir):
            rel = f.relative_to(root).as_posix()
            if not is_image_path(f):
                ignored.append(rel)
                continue
            problem, patient = _probe(f)
            if problem:
                if not skip_bad:
                    raise DataError(problem, f, _fix_bad())
                skipped.append((rel, problem))
                continue
            rows.append(_row(f, rel, [class_dir.name], patient, None))
        if len(rows) == n_before:
            empty.append(class_dir)
    if not rows:
        raise DataError(
            "no images found in the class folders",
            root,
            f"supported files: {', '.join(IMAGE_EXTENSIONS)} (and DICOM files without extension)",
        )
    if empty:
        raise DataError(
            f"class folder has no images: {empty[0].name}",
            empty[0],
            "add images to it or remove the folder",
        )
    return _result(rows, skipped, root, "folders", ignored)


def _walk(folder: Path) -> Iterable[Path]:
    """Files below ``folder``, sorted, skipping hidden files and folders."""
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not f.is_file():
            continue
        yield f


def _scan_manifest(manifest: Path, skip_bad: bool) -> IndexResult:
    manifest = manifest.resolve()
    base = manifest.parent
    try:
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(
            "the manifest is empty", manifest, "write a header path,label and one row per image"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(
            f"cannot parse the manifest CSV: {_short(exc)}",
            manifest,
            "save it as UTF-8 CSV with a header row",
        ) from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    for needed in ("path", "label"):
        if needed not in table.columns:
            raise DataError(
                f"the manifest has no '{needed}' column (columns: {', '.join(table.columns)})",
                manifest,
                "the header must be path,label[,patient_id][,split]",
            )
    if table.empty:
        raise DataError("the manifest has no rows", manifest, "add one row per image")
    has_pid = "patient_id" in table.columns
    has_split = "split" in table.columns

    rows: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[Path, int] = {}
    for i, rec in enumerate(table.to_dict("records")):
        line = i + 2  # header is line 1
        where = f"{manifest}, line {line}"
        raw_path = str(rec["path"]).strip()
        if not raw_path:
            _bad_row(skip_bad, skipped, f"line {line}", "empty path", where)
            continue
        if "\x00" in raw_path:
            _bad_row(skip_bad, skipped, f"line {line}", "the path holds a NUL character", where)
            continue
        f = Path(raw_path).expanduser()
        f = f if f.is_absolute() else base / f
        item = _item_name(f, base)
        labels = _parse_labels(rec["label"])
        if not labels:
            raise DataError(
                f"row has no label ({raw_path})",
                where,
                "give every row a class; multi-label rows as a|b",
            )
        split = _parse_split(rec.get("split", ""), where) if has_split else None
        try:  # a NUL byte or an over-long name is not a path the OS can look up
            is_file, exists = f.is_file(), f.exists()
        except (OSError, ValueError) as exc:
            _bad_row(skip_bad, skipped, f"line {line}", f"unusable path: {_short(exc)}", where)
            continue
        if not is_file:
            reason = "file not found" if not exists else "not a file"
            _bad_row(skip_bad, skipped, item, f"{reason}: {f}", where)
            continue
        if not is_image_path(f):
            _bad_row(
                skip_bad,
                skipped,
                item,
                f"not a supported image ({f.suffix or 'no extension'}): {f}",
                where,
            )
            continue
        key = f.resolve()
        if key in seen:
            raise DataError(
                f"{raw_path} is listed twice (lines {seen[key]} and {line})",
                manifest,
                "list each image once; write several labels as a|b",
            )
        seen[key] = line
        pid = str(rec.get("patient_id", "") or "").strip() if has_pid else ""
        problem, patient = _probe(f, need_patient=not pid)
        if problem:
            _bad_row(skip_bad, skipped, item, problem, f)
            continue
        rows.append(_row(f, item, labels, hash_patient_id(pid) if pid else patient, split))
    if not rows:
        raise DataError("no usable images in the manifest", manifest, "check the paths in it")
    return _result(rows, skipped, base, "manifest", [])


def _bad_row(skip_bad: bool, skipped: list, item: str, reason: str, where: Any) -> None:
    if not skip_bad:
        raise DataError(reason, where, _fix_bad())
    skipped.append((item, reason))


def _fix_bad() -> str:
    return "fix or remove the file (or its manifest row), or pass --skip-bad to leave it out"


def _item_name(f: Path, base: Path) -> str:
    try:
        return f.resolve().relative_to(base).as_posix()
    except ValueError:
        return str(f.resolve())


def _parse_labels(value: Any) -> list[str]:
    labels: list[str] = []
    for part in str(value or "").split("|"):
        part = part.strip()
        if part and part not in labels:
            labels.append(part)
    return labels


def _parse_split(value: Any, where: str) -> str | None:
    text = str(value or "").strip().lower()
    if not text:
        return None
    if text not in _SPLIT_ALIASES:
        raise DataError(
            f"unknown split {value!r}",
            where,
            "use train, val or test (or leave it empty to let tl assign it)",
        )
    return _SPLIT_ALIASES[text]


def _probe(f: Path, need_patient: bool = True) -> tuple[str | None, str | None]:
    """(why ``f``'s header cannot be read or None, hashed DICOM PatientID or None).

    Cheap: headers only, no pixel decoding.
    """
    if is_dicom_path(f):
        try:
            ds = read_dicom_header(f)
        except DataError as exc:
            return exc.what, None
        pid = str(ds.get("PatientID", "") or "").strip() if need_patient else ""
        return None, hash_patient_id(pid) if pid else None
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(f) as img:
                img.size  # noqa: B018 — the header is parsed on open
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as exc:
        return f"unreadable image: {_short(exc)}", None
    return None, None


def _row(f: Path, item: str, labels: list[str], patient: str | None, split: str | None) -> dict:
    return {
        "path": str(f.resolve()),
        "item": item,
        "labels": labels,
        "patient": patient,
        "split": split,
    }


def _result(
    rows: list[dict[str, Any]],
    skipped: list[tuple[str, str]],
    root: Path,
    layout: str,
    ignored: list[str],
) -> IndexResult:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    # object columns keep None for "unknown" (pandas' string dtype would turn it into NaN)
    for column in ("labels", "patient", "split"):
        frame[column] = pd.Series([r[column] for r in rows], dtype=object, index=frame.index)
    labels = sorted({label for ls in frame["labels"] for label in ls})
    multilabel = bool((frame["labels"].map(len) > 1).any())
    return IndexResult(frame, labels, multilabel, skipped, root, layout, ignored)


def _check_classes(result: IndexResult) -> None:
    frame = result.frame
    if len(result.labels) < 2:
        only = result.labels[0] if result.labels else "none"
        raise DataError(
            f"only one class found ({only})",
            result.root,
            "a classifier needs at least two classes: add a subfolder / label for another class",
        )
    if frame["split"].isna().any():
        check_class_counts(frame, where=result.root, layout=result.layout)


# ------------------------------------------------------------------------------ verify


def verify(result: IndexResult, skip_bad: bool = False) -> IndexResult:
    """Decode every image once; a corrupt one is an error naming it, or skipped (counted)."""
    keep: list[int] = []
    for i, f in enumerate(result.frame["path"]):
        try:
            read_image(f)
        except DataError as exc:
            if not skip_bad:
                raise
            result.skipped.append((result.frame["item"].iloc[i], exc.what))
            continue
        keep.append(i)
    frame = result.frame.iloc[keep].reset_index(drop=True)
    out = _result(
        frame.to_dict("records"), result.skipped, result.root, result.layout, result.ignored
    )
    _check_classes(out)
    return out


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
