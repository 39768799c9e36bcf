"""read_image: DICOM windowing with exact values, Pillow formats, errors, privacy, no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from tl.core import DataError
from tl_medical.demo import write_dicom
from tl_medical.readers import (
    IMAGE_EXTENSIONS,
    hash_patient_id,
    is_image_path,
    read_dicom_header,
    read_image,
)

# stored values → modality x = 2 * s - 100; LINEAR window c=300, w=201 (PS3.3 C.11.2.1.2.1):
# x ≤ 199.5 → 0, x > 399.5 → 255, else ((x - 299.5) / 200 + 0.5) * 255
STORED = np.array([[50, 149, 150, 175], [200, 250, 300, 0]], dtype=np.uint16)
EXPECTED = np.array([[0, 0, 1, 64], [128, 255, 255, 0]], dtype=np.uint8)


def _dicom(tmp_path: Path, name: str = "k.dcm", **kw) -> Path:
    args = dict(
        bits_stored=12,
        slope=2.0,
        intercept=-100.0,
        window=(300.0, 201.0),
        patient_id="PAT-0042",
        patient_name="DOE^JANE",
        birth_date="19600101",
    )
    stored = kw.pop("stored", STORED)
    args.update(kw)
    path = tmp_path / name
    write_dicom(path, stored, **args)
    return path


# ----------------------------------------------------------------------------- DICOM


def test_dicom_rescale_then_header_window_exact(tmp_path):
    pixels, info = read_image(_dicom(tmp_path))
    assert pixels.dtype == np.uint8 and pixels.shape == STORED.shape
    np.testing.assert_array_equal(pixels, EXPECTED)
    assert info["window"] == [300.0, 201.0]
    assert info["modality"] == "DX" and info["photometric"] == "MONOCHROME2"
    assert info["source_bits"] == 12 and info["frames"] == 1


def test_dicom_monochrome1_inverted_after_windowing(tmp_path):
    pixels, info = read_image(_dicom(tmp_path, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(pixels, 255 - EXPECTED)
    assert info["photometric"] == "MONOCHROME1"


def test_dicom_window_override(tmp_path):
    # c=100, w=101 → x ≤ 49.5 → 0, x > 99.5 → 255; x = 2s - 100
    stored = np.array([[25, 75, 74, 100, 125]], dtype=np.uint16)
    pixels, info = read_image(_dicom(tmp_path, "o.dcm", stored=stored), window=(100, 101))
    # s=25 → x=-50 → 0; s=75 → x=50 → ((50-99.5)/100+0.5)*255 = 0.0255*255 → 1
    # s=74 → x=48 → 0; s=100 → x=100 (the centre) → 128.8 → 129; s=125 → x=150 → 255
    np.testing.assert_array_equal(pixels, [[0, 1, 0, 129, 255]])
    assert info["window"] == [100.0, 101.0]


def test_dicom_multivalued_window_uses_first(tmp_path):
    path = _dicom(tmp_path, window=[(300.0, 201.0), (1000.0, 10.0)])
    assert len(pydicom.dcmread(path).WindowCenter) == 2
    pixels, _ = read_image(path)
    np.testing.assert_array_equal(pixels, EXPECTED)


def test_dicom_without_window_uses_min_max(tmp_path):
    pixels, info = read_image(_dicom(tmp_path, window=None))
    assert info["window"] == "minmax"
    stored = STORED
    assert pixels[stored == stored.max()].min() == 255
    assert pixels[stored == stored.min()].max() == 0
    # order preserved: min-max is monotonic
    order = np.argsort(STORED.ravel(), kind="stable")
    assert np.all(np.diff(pixels.ravel()[order].astype(int)) >= 0)


def test_dicom_identity_rescale_16_bit(tmp_path):
    stored = np.array([[0, 30000, 32767, 32768, 65535]], dtype=np.uint16)
    # c = 32768, w = 65536: ((x - 32767.5) / 65535 + 0.5) * 255
    path = _dicom(tmp_path, stored=stored, bits_stored=16, slope=1.0, intercept=0.0,
                  window=(32768.0, 65536.0))  # fmt: skip
    pixels, info = read_image(path)
    expected = np.rint(np.clip((stored - 32767.5) / 65535 + 0.5, 0, 1) * 255)
    np.testing.assert_array_equal(pixels, expected.astype(np.uint8))
    assert info["source_bits"] == 16


def test_dicom_voi_lut_sequence(tmp_path):
    path = _dicom(tmp_path, window=None, slope=1.0, intercept=0.0,
                  stored=np.array([[0, 1, 2, 3, 9]], dtype=np.uint16))  # fmt: skip
    ds = pydicom.dcmread(path)
    item = pydicom.Dataset()
    item.LUTDescriptor = [4, 0, 8]  # 4 entries, first maps value 0, 8-bit output
    item.add_new(0x00283006, "US", [0, 51, 102, 255])  # LUT Data
    ds.VOILUTSequence = [item]
    ds.save_as(path)
    pixels, info = read_image(path)
    np.testing.assert_array_equal(pixels, [[0, 51, 102, 255, 255]])  # beyond the LUT: last
    assert info["window"] == "voi_lut"


def test_dicom_multiframe_takes_middle_frame(tmp_path):
    path = _dicom(tmp_path, window=None, slope=1.0, intercept=0.0)
    ds = pydicom.dcmread(path)
    frames = np.stack([np.full((2, 3), v, np.uint16) for v in (10, 20, 30)])
    frames[1, 0, 0] = 0  # so min-max of the middle frame is not constant
    ds.Rows, ds.Columns, ds.NumberOfFrames = 2, 3, 3
    ds.PixelData = frames.astype("<u2").tobytes()
    ds.save_as(path)
    pixels, info = read_image(path)
    assert info["frames"] == 3 and pixels.shape == (2, 3)
    np.testing.assert_array_equal(pixels, [[0, 255, 255], [255, 255, 255]])


def test_dicom_without_extension_detected_by_preamble(tmp_path):
    src = _dicom(tmp_path)
    plain = tmp_path / "IM0001"
    plain.write_bytes(src.read_bytes())
    assert is_image_path(plain)
    np.testing.assert_array_equal(read_image(plain)[0], EXPECTED)


def test_privacy_only_hashed_patient_id(tmp_path):
    path = _dicom(tmp_path)
    _, info = read_image(path)
    assert info["hashed_patient_id"] == hash_patient_id("PAT-0042")
    text = repr(info)
    for secret in ("PAT-0042", "DOE", "JANE", "19600101"):
        assert secret not in text
    assert hash_patient_id("PAT-0042") != hash_patient_id("PAT-0043")
    assert len(hash_patient_id("x")) == 16 and hash_patient_id("x") != "x"
    assert read_image(_dicom(tmp_path, "anon.dcm", patient_id=""))[1]["hashed_patient_id"] is None


# ---------------------------------------------------------------------------- Pillow


def test_png_gray_and_rgb_roundtrip(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    pixels, info = read_image(tmp_path / "g.png")
    np.testing.assert_array_equal(pixels, gray)
    assert info["source_bits"] == 8 and info["photometric"] == "MONOCHROME2"
    assert info["hashed_patient_id"] is None and info["modality"] is None

    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.png")
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.bmp")
    for name in ("c.png", "c.bmp"):
        pixels, info = read_image(tmp_path / name)
        np.testing.assert_array_equal(pixels, rgb)
        assert info["photometric"] == "RGB"


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_scaled_over_the_type_range(tmp_path, suffix):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / f"w{suffix}")
    pixels, info = read_image(tmp_path / f"w{suffix}")
    np.testing.assert_array_equal(pixels, [[0, 1, 128, 255]])  # v * 255 / 65535, not clipped
    assert info["source_bits"] == 16


def test_palette_la_rgba_converted(tmp_path):
    gray = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    Image.fromarray(gray, "L").convert("P").save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png")[0], gray)
    Image.fromarray(gray, "L").convert("LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png")[0], gray)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    pixels, info = read_image(tmp_path / "a.png")
    assert pixels.shape == (2, 2, 3) and info["photometric"] == "RGB"
    assert (pixels[..., 0] == 200).all()
    colour = Image.fromarray(np.dstack([gray, gray[::-1], gray.T]), "RGB").convert("P")
    colour.save(tmp_path / "pc.png")
    assert read_image(tmp_path / "pc.png")[0].shape == (2, 2, 3)


def test_jpeg_reads(tmp_path):
    Image.fromarray(np.full((16, 16), 128, np.uint8), "L").save(tmp_path / "x.jpg")
    pixels, info = read_image(tmp_path / "x.jpg")
    assert pixels.shape == (16, 16) and abs(int(pixels.mean()) - 128) <= 2
    assert info["format"] == "JPEG"


# ---------------------------------------------------------------------------- errors


def _error(path, match: str) -> DataError:
    with pytest.raises(DataError) as err:
        read_image(path)
    assert str(path) in str(err.value)
    assert match in err.value.what
    assert "\n" not in str(err.value) and err.value.fix
    return err.value


def test_missing_file(tmp_path):
    _error(tmp_path / "nope.png", "not found")


def test_unsupported_extension(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    _error(tmp_path / "notes.txt", "unsupported image type")
    assert ".dcm" in IMAGE_EXTENSIONS and ".png" in IMAGE_EXTENSIONS


def test_corrupt_and_truncated_png(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    _error(tmp_path / "bad.png", "cannot decode image")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(
        tmp_path / "full.png"
    )
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    _error(tmp_path / "cut.png", "cannot decode image")


def test_corrupt_truncated_and_pixelless_dicom(tmp_path):
    data = _dicom(tmp_path).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-5])
    _error(tmp_path / "cut.dcm", "truncated")
    (tmp_path / "head.dcm").write_bytes(data[:300])
    _error(tmp_path / "head.dcm", "no pixel data")
    (tmp_path / "junk.dcm").write_bytes(b"not a dicom at all" * 20)
    _error(tmp_path / "junk.dcm", "unreadable DICOM")
    ds = pydicom.dcmread(tmp_path / "k.dcm")
    del ds.PixelData
    ds.save_as(tmp_path / "sr.dcm")
    _error(tmp_path / "sr.dcm", "no pixel data")
    with pytest.raises(DataError, match="truncated"):
        read_dicom_header(tmp_path / "cut.dcm")  # the cheap header check sees it too


# pydicom's own sample files (bundled with it): images stored uncompressed or RLE (pydicom's
# own decoder) and the same images with the compressions PACS exports use
LOSSLESS = [
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),
    ("MR_small_jp2klossless.dcm", "MR_small.dcm"),
    ("MR_small_RLE.dcm", "MR_small.dcm"),
    ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb_rle.dcm"),  # JPEG lossless, process 14
]


@pytest.mark.parametrize("name, reference", LOSSLESS)
def test_lossless_compressed_dicom_reads_as_the_uncompressed_image(name, reference):
    from pydicom.data import get_testdata_file

    expected, _ = read_image(get_testdata_file(reference))
    pixels, info = read_image(get_testdata_file(name))
    assert info["format"] == "DICOM"
    np.testing.assert_array_equal(pixels, expected)


def test_lossy_jpeg_and_jpeg2000_dicom_decode():
    from pydicom.data import get_testdata_file

    reference, _ = read_image(get_testdata_file("SC_rgb_rle.dcm"))
    baseline, _ = read_image(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))  # JPEG baseline, YBR
    assert np.abs(baseline.astype(int) - reference).max() <= 8
    for name in ["JPGExtended.dcm", "examples_jpeg2k.dcm"]:  # 12-bit JPEG; JPEG 2000 RGB
        pixels, _ = read_image(get_testdata_file(name))
        assert pixels.dtype == np.uint8 and pixels.std() > 10  # an image, not a blank


def test_a_uid_that_is_no_transfer_syntax_fails_cleanly(tmp_path):
    ds = pydicom.dcmread(_dicom(tmp_path))
    ds.file_meta.TransferSyntaxUID = "1.2.3.4"
    ds.save_as(tmp_path / "odd.dcm")
    with pytest.raises(DataError):
        read_image(tmp_path / "odd.dcm")


def test_damaged_compressed_dicom_says_so(tmp_path):
    from pydicom.data import get_testdata_file

    source = Path(get_testdata_file("MR_small_jp2klossless.dcm"))
    ds = pydicom.dcmread(source)
    ds.PixelData = ds.PixelData[:40] + b"\x00" * (len(ds.PixelData) - 40)
    ds.save_as(tmp_path / "damaged.dcm")
    with pytest.raises(DataError) as caught:
        read_image(tmp_path / "damaged.dcm")
    assert "cannot decode DICOM pixel data" in str(caught.value)
    assert "is damaged" in caught.value.fix and "JPEG 2000" in caught.value.fix


# --------------------------------------------------------------------------- no torch

NO_TORCH = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
from pathlib import Path
import numpy as np
from tl_medical import readers, dataset_index, demo, splits, runtime, plugin
root = demo.write_dataset(Path(sys.argv[1]) / "data", {"normal": 6, "nodule": 6}, seed=1,
                          dicom_fraction=0.5, image_size=64)
index = dataset_index.scan(root)
frame = splits.assign_splits(index.frame, seed=0)
pixels, info = readers.read_image(frame["path"].iloc[0])
assert pixels.dtype == np.uint8
assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules
               if sys.modules[name] is not None)
print("ok", len(frame))
"""


def test_data_layer_imports_no_torch(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok 12"
