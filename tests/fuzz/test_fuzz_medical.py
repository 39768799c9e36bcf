"""Fuzzing the medical readers: image files, DICOM headers and pixel data, manifests.

Every case ends in pixels or a `DataError` — never another exception, and never a silently
wrong value: undamaged files are checked against values computed here independently.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from fuzzkit import FUZZ, result_or_tl_error
from hypothesis import given
from hypothesis import strategies as st

pydicom = pytest.importorskip("pydicom")
from PIL import Image  # noqa: E402
from tl_medical.dataset_index import scan  # noqa: E402
from tl_medical.readers import IMAGE_EXTENSIONS, read_dicom_header, read_image  # noqa: E402


def _tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="tlfuzz-"))


# ------------------------------------------------------------------- arbitrary bytes
@FUZZ
@given(blob=st.binary(max_size=600), suffix=st.sampled_from(IMAGE_EXTENSIONS + (".xyz", "")))
def test_random_bytes_are_pixels_or_a_data_error(blob, suffix):
    path = _tmp() / f"x{suffix}"
    path.write_bytes(blob)
    pixels, _ = result_or_tl_error(lambda: read_image(path))
    if pixels is not None:
        assert pixels.dtype == np.uint8 and pixels.ndim in (2, 3)


@FUZZ
@given(blob=st.binary(max_size=400))
def test_dicom_preamble_then_garbage(blob):
    path = _tmp() / "x.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + blob)
    result_or_tl_error(lambda: read_image(path))
    result_or_tl_error(lambda: read_dicom_header(path))


# ------------------------------------------------------------------ pillow formats
MODES = ["L", "I;16", "RGB", "RGBA", "P", "1", "F", "LA", "CMYK", "I"]


@FUZZ
@given(
    mode=st.sampled_from(MODES),
    fmt=st.sampled_from(["PNG", "TIFF", "BMP", "JPEG"]),
    h=st.integers(1, 24),
    w=st.integers(1, 24),
    seed=st.integers(0, 2**16),
    cut=st.one_of(st.none(), st.floats(0.0, 0.99)),
)
def test_pillow_images_whole_or_truncated(mode, fmt, h, w, seed, cut):
    rng = np.random.default_rng(seed)
    if mode in ("I;16",):
        img = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    elif mode in ("F",):
        img = Image.fromarray(rng.normal(0, 1e3, (h, w)).astype(np.float32))
    elif mode == "I":
        img = Image.fromarray(rng.integers(-(2**20), 2**20, (h, w), dtype=np.int32))
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):
        return  # this format cannot store this mode: nothing to read
    data = buf.getvalue()
    if cut is not None:
        data = data[: int(len(data) * cut)]
    suffix = {"PNG": ".png", "TIFF": ".tif", "BMP": ".bmp", "JPEG": ".jpg"}[fmt]
    path = _tmp() / f"img{suffix}"
    path.write_bytes(data)
    pixels, error = result_or_tl_error(lambda: read_image(path)[0])
    if cut is None:
        assert error is None, error.line()
    if pixels is None:
        return
    assert pixels.dtype == np.uint8 and pixels.shape[:2] == (h, w)
    if cut is None and mode == "L" and fmt in ("PNG", "TIFF", "BMP"):
        np.testing.assert_array_equal(pixels, np.asarray(img))  # lossless: exact
    if cut is None and mode == "I;16" and fmt in ("PNG", "TIFF"):
        expected = np.rint(np.asarray(img).astype(np.float64) / 65535 * 255).astype(np.uint8)
        np.testing.assert_array_equal(pixels, expected)


# -------------------------------------------------------------------------- DICOM
SYNTAXES = ["explicit_le", "implicit_le", "explicit_be", "jpeg_garbage", "unknown_uid"]


def _write_dicom(path, stored, *, bits_allocated, bits_stored, signed, photometric, frames,
                 syntax, slope, intercept, window, pid="PAT-1"):  # fmt: skip
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        JPEGBaseline8Bit,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = {
        "explicit_le": ExplicitVRLittleEndian,
        "implicit_le": ImplicitVRLittleEndian,
        "explicit_be": ExplicitVRBigEndian,
        "jpeg_garbage": JPEGBaseline8Bit,
        "unknown_uid": ExplicitVRLittleEndian,
    }[syntax]
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientID = pid
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = f"{window[0]:g}", f"{window[1]:g}"
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits_allocated // 8}")
    order = ">" if syntax == "explicit_be" else "<"
    raw = np.ascontiguousarray(stored.astype(dtype.newbyteorder(order))).tobytes()
    if syntax == "jpeg_garbage":
        ds.PixelData = encapsulate([raw[: max(1, len(raw) // 2)]] * frames)
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = raw
        ds["PixelData"].VR = "OW" if bits_allocated > 8 else "OB"
    if syntax == "explicit_be":
        pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    else:
        ds.save_as(path, enforce_file_format=True)
    if syntax == "unknown_uid":  # a transfer syntax nobody knows, same length as the real one
        blob = path.read_bytes().replace(b"1.2.840.10008.1.2.1\0", b"1.2.840.99999.9.9.9\0", 1)
        path.write_bytes(blob)


dicom_cases = st.fixed_dictionaries(
    {
        "bits": st.sampled_from([(8, 8), (16, 12), (16, 16)]),
        "signed": st.booleans(),
        "photometric": st.sampled_from(["MONOCHROME1", "MONOCHROME2"]),
        "frames": st.integers(1, 3),
        "syntax": st.sampled_from(SYNTAXES),
        "slope": st.sampled_from([1.0, 2.0, 0.5]),
        "intercept": st.sampled_from([0.0, -1024.0, 100.0]),
        "window": st.one_of(st.none(), st.tuples(st.integers(-500, 500), st.integers(1, 800))),
        "h": st.integers(1, 12),
        "w": st.integers(1, 12),
        "seed": st.integers(0, 2**16),
        "damage": st.sampled_from(["none", "none", "truncate", "flip"]),
        "where": st.floats(0.0, 1.0),
    }
)


def _stored(case) -> np.ndarray:
    alloc, bits = case["bits"]
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if case["signed"] else (0, 2**bits - 1)
    rng = np.random.default_rng(case["seed"])
    shape = (case["frames"], case["h"], case["w"]) if case["frames"] > 1 else (case["h"], case["w"])
    return rng.integers(lo, hi + 1, shape, dtype=np.int64)


def _expected(case, stored: np.ndarray) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR window on modality values, computed independently."""
    frame = stored[case["frames"] // 2] if case["frames"] > 1 else stored
    x = frame.astype(np.float64) * case["slope"] + case["intercept"]
    if case["window"] is not None:
        c, w = float(case["window"][0]), float(case["window"][1])
        if w == 1:
            unit = (x > c - 0.5).astype(np.float64)
        else:
            unit = np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
    else:
        lo, hi = x.min(), x.max()
        unit = np.zeros_like(x) if hi <= lo else (x - lo) / (hi - lo)
    if case["photometric"] == "MONOCHROME1":
        unit = 1 - unit
    return np.rint(unit * 255).astype(np.uint8)


@FUZZ
@given(case=dicom_cases)
def test_dicom_variants_decode_exactly_or_fail_cleanly(case):
    alloc, bits = case["bits"]
    stored = _stored(case)
    path = _tmp() / "x.dcm"
    _write_dicom(path, stored, bits_allocated=alloc, bits_stored=bits, signed=case["signed"],
                 photometric=case["photometric"], frames=case["frames"], syntax=case["syntax"],
                 slope=case["slope"], intercept=case["intercept"], window=case["window"])  # fmt: skip
    blob = bytearray(path.read_bytes())
    if case["damage"] == "truncate":
        blob = blob[: int(len(blob) * case["where"])]
    elif case["damage"] == "flip" and len(blob) > 132:
        at = 132 + int((len(blob) - 133) * case["where"])
        blob[at] ^= 0xFF
    path.write_bytes(bytes(blob))
    header, _ = result_or_tl_error(lambda: read_dicom_header(path))
    pixels, error = result_or_tl_error(lambda: read_image(path)[0])
    clean = case["damage"] == "none" and case["syntax"] in (
        "explicit_le",
        "implicit_le",
        "explicit_be",
    )
    if clean:
        assert header is not None and error is None, error and error.line()
        np.testing.assert_array_equal(pixels, _expected(case, stored))
    elif case["syntax"] in ("jpeg_garbage", "unknown_uid") and case["damage"] == "none":
        assert error is not None  # garbage or unknown encoding must not decode to numbers
    if pixels is not None:
        assert pixels.dtype == np.uint8 and pixels.shape == (case["h"], case["w"])


# ----------------------------------------------------------------------- manifests
cells = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "a.png",
            "missing.png",
            "../a.png",
            "",
            "nan",
            "a|b",
            "train",
            "TEST",
            "x.dcm",
            "1e309",
            '"',
            "\x00",
            "é",
            "a,b",
        ]
    ),  # fmt: skip
)


@FUZZ
@given(
    header=st.lists(
        st.sampled_from(["path", "label", "patient_id", "split", "path", "x", ""]), max_size=5
    ),  # fmt: skip
    rows=st.lists(st.lists(cells, max_size=5), max_size=6),
    encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]),
)
def test_manifest_is_an_index_or_a_data_error(header, rows, encoding):
    root = _tmp()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "a.png")
    text = "\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n"
    (root / "manifest.csv").write_bytes(text.encode(encoding, errors="replace"))
    found, _ = result_or_tl_error(lambda: scan(root / "manifest.csv"))
    if found is not None:
        assert len(found.frame) > 0 and all(Path(p).exists() for p in found.frame["path"])


@FUZZ
@given(
    names=st.lists(st.sampled_from(["cat", "dog", ".hidden", "a b", "é"]), max_size=3, unique=True),
    files=st.lists(
        st.tuples(
            st.integers(0, 2), st.sampled_from([".png", ".txt", ".dcm", ".jpg"]), st.booleans()
        ),
        max_size=6,
    ),  # fmt: skip
    skip_bad=st.booleans(),
)
def test_class_folders_are_an_index_or_a_data_error(names, files, skip_bad):
    root = _tmp() / "data"
    root.mkdir()
    for name in names:
        (root / name).mkdir()
    for n, (k, suffix, good) in enumerate(files):
        if not names:
            break
        target = root / names[k % len(names)] / f"f{n}{suffix}"
        if good and suffix == ".png":
            Image.fromarray(np.full((4, 4), n, np.uint8)).save(target)
        else:
            target.write_bytes(b"not an image" * good)
    found, _ = result_or_tl_error(lambda: scan(root, skip_bad=skip_bad))
    if found is not None:
        assert len(found.frame) > 0
