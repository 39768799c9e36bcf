"""The generated chest-radiograph demo: formats, balance, patients, privacy, realism checks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from tl.core import DataError
from tl_medical import demo
from tl_medical.dataset_index import scan
from tl_medical.readers import read_image


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """``tl demo medical DIR --size small`` once for the module (≈ 10 s)."""
    return demo.write_demo(tmp_path_factory.mktemp("demo") / "cxr", "small", seed=0)


@pytest.fixture(scope="module")
def decoded(small) -> list[tuple[str, np.ndarray, dict]]:
    index = scan(small)
    return [
        (labels[0], *read_image(path))
        for path, labels in zip(index.frame["path"], index.frame["labels"], strict=True)
    ]


def test_layout_balance_and_formats(small):
    files = sorted(p for p in small.rglob("*") if p.is_file())
    assert {p.parent.name for p in files} == set(demo.CLASSES)
    assert all(p.parent.parent == small for p in files)  # only class folders, no manifest
    per_class = Counter(p.parent.name for p in files)
    assert per_class == dict.fromkeys(demo.CLASSES, 100)
    for cls in demo.CLASSES:
        suffixes = Counter(p.suffix for p in files if p.parent.name == cls)
        assert set(suffixes) == {".dcm", ".png"}
        assert 0.1 <= suffixes[".png"] / 100 <= 0.15
    names = [p.stem for p in files]
    assert len(set(names)) == len(names)  # shuffled numbers, no class or patient in names


def test_dicom_headers_realistic(small):
    headers = [pydicom.dcmread(p) for p in sorted(small.rglob("*.dcm"))]
    photometric = Counter(str(ds.PhotometricInterpretation) for ds in headers)
    assert photometric["MONOCHROME2"] > photometric["MONOCHROME1"] > 0
    assert {int(ds.BitsStored) for ds in headers} == {12, 16}
    assert {str(ds.Modality) for ds in headers} == {"DX", "CR"}
    assert any(float(ds.RescaleSlope) != 1 or float(ds.RescaleIntercept) != 0 for ds in headers)
    assert all(ds.BitsAllocated == 16 and ds.Rows == ds.Columns == 256 for ds in headers)
    uids = [str(ds.SOPInstanceUID) for ds in headers]
    assert len(set(uids)) == len(uids) and all(
        uid.startswith("1.2.826.0.1.3680043") for uid in uids
    )
    assert all(ds.PatientID and ds.PatientName and ds.PatientBirthDate for ds in headers)
    for ds in headers[:20]:  # the stored values fit BitsStored
        assert int(ds.pixel_array.max()) < 2 ** int(ds.BitsStored)


def test_patients(small):
    index = scan(small)
    frame = index.frame
    dicom = frame[frame["path"].str.endswith(".dcm")]
    per_patient = dicom.groupby("patient").size()
    assert per_patient.between(2, 4).all()
    classes = dicom.groupby("patient")["labels"].agg(lambda s: {ls[0] for ls in s})
    assert (classes.map(len) == 1).all()  # all of a patient's images share the class
    assert frame[frame["path"].str.endswith(".png")]["patient"].isna().all()
    assert 60 <= per_patient.size <= 110
    raw_ids = {str(pydicom.dcmread(p, stop_before_pixels=True).PatientID) for p in dicom["path"]}
    assert len(raw_ids) == per_patient.size
    assert not raw_ids & set(frame["patient"].dropna())  # only hashes in the index


def test_images_read_back_and_privacy(small, decoded):
    assert len(decoded) == 300
    secrets = set()
    for path in sorted(small.rglob("*.dcm"))[:40]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        secrets |= {str(ds.PatientName), str(ds.PatientID), str(ds.PatientBirthDate)}
        secrets |= set(str(ds.PatientName).split("^"))
    for _, pixels, info in decoded:
        assert pixels.dtype == np.uint8 and pixels.shape == (256, 256)
        low, high = np.percentile(pixels, [1, 99])
        assert low < 60 and high > 130 and high - low > 120  # the window shows the anatomy
        text = repr(info)
        assert not any(secret in text for secret in secrets)


def test_mean_intensity_does_not_separate_classes(decoded):
    means = {c: [] for c in demo.CLASSES}
    for cls, pixels, _ in decoded:
        means[cls].append(pixels.mean())
    spread = np.std(np.concatenate(list(means.values())))
    centres = {c: float(np.mean(v)) for c, v in means.items()}
    for a in demo.CLASSES:
        for b in demo.CLASSES:
            assert abs(centres[a] - centres[b]) < 0.4 * spread, centres


def test_lesions_are_local_and_scaled_by_contrast():
    for label in ("nodule", "effusion"):
        patient = demo.sample_patient(np.random.default_rng(5), label)
        plain = demo.generate_case(np.random.default_rng(1), label, patient=patient,
                                   lesion_contrast=0.0)  # fmt: skip
        sick = demo.generate_case(np.random.default_rng(1), label, patient=patient)
        weak = demo.generate_case(np.random.default_rng(1), label, patient=patient,
                                  lesion_contrast=0.1)  # fmt: skip
        assert sick.dtype == np.float32 and sick.shape == (256, 256)
        assert sick.min() >= 0.0 and sick.max() <= 1.0
        diff = sick - plain
        changed = np.abs(diff) > 0.02
        assert diff.max() > 0.15  # a visible opacity …
        assert changed.mean() < (0.03 if label == "nodule" else 0.12)  # … in a small region
        assert np.abs(weak - plain).sum() < np.abs(diff).sum()
        if label == "effusion":  # at a lung base
            rows = np.nonzero(changed)[0]
            assert rows.mean() > 256 * 0.5 and rows.min() > 256 * 0.3
    normal = demo.sample_patient(np.random.default_rng(5), "normal")
    a = demo.generate_case(np.random.default_rng(1), "normal", patient=normal)
    b = demo.generate_case(np.random.default_rng(1), "normal", patient=normal, lesion_contrast=0)
    np.testing.assert_array_equal(a, b)  # no lesion, nothing to scale


def test_write_dataset_styles_determinism_and_no_overwrite(tmp_path):
    counts = {"normal": 4, "effusion": 4}
    a = demo.write_dataset(tmp_path / "a", counts, seed=7, image_size=64, dicom_fraction=0.5)
    b = demo.write_dataset(tmp_path / "b", counts, seed=7, image_size=64, dicom_fraction=0.5)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)  # reproducible
    assert Counter(f.suffix for f in files_a) == {".dcm": 4, ".png": 4}

    target = demo.write_dataset(tmp_path / "t", counts, seed=7, image_size=64, style="portable")
    assert scan(target).labels == ["effusion", "normal"]
    std = [demo.generate_case(np.random.default_rng(i), "normal") for i in range(4)]
    port = [
        demo.generate_case(np.random.default_rng(i), "normal", style="portable") for i in range(4)
    ]
    assert np.mean([x.std() for x in port]) < np.mean([x.std() for x in std])  # flatter contrast

    with pytest.raises(DataError, match="not empty"):
        demo.write_demo(a)
    assert sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()) == files_a  # untouched
    (tmp_path / "empty").mkdir()
    demo.write_dataset(tmp_path / "empty", {"normal": 2, "nodule": 2}, image_size=32)
    assert not list(tmp_path.glob(".*partial*"))  # no temporary folder left behind
    with pytest.raises(DataError, match="unknown demo size"):
        demo.write_demo(tmp_path / "x", size="huge")
    with pytest.raises(ValueError, match="unknown demo classes"):
        demo.write_dataset(tmp_path / "y", {"fracture": 3})
