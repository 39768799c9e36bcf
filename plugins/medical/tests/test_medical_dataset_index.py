"""scan (folder + manifest layouts, patients, errors, read-only) and assign_splits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from tl.core import DataError
from tl_medical.dataset_index import scan, verify
from tl_medical.demo import write_dicom
from tl_medical.readers import hash_patient_id
from tl_medical.splits import assign_splits


def _png(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8), "L").save(path)
    return path


def _dcm(path: Path, patient_id: str = "PID-1") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = np.arange(64, dtype=np.uint16).reshape(8, 8) * 10
    write_dicom(path, stored, bits_stored=12, window=(300.0, 600.0), patient_id=patient_id,
                patient_name="SECRET^NAME", birth_date="19700101")  # fmt: skip
    return path


def _tree_hash(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i in range(3):
        _png(root / "normal" / f"n{i}.png")
    _png(root / "normal" / "sub" / "deep.png")  # found recursively
    _dcm(root / "nodule" / "a.dcm", "PID-1")
    _dcm(root / "nodule" / "b.dcm", "PID-1")
    _dcm(root / "nodule" / "c.dcm", "PID-2")
    (root / "nodule" / "README.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    (root / "LICENSE").write_text("top-level notes are not data")
    return root


def _error(path: Path, match: str, **kw) -> DataError:
    with pytest.raises(DataError) as err:
        scan(path, **kw)
    assert match in str(err.value), str(err.value)
    assert err.value.fix and "\n" not in str(err.value)
    return err.value


# ------------------------------------------------------------------------------ layouts


def test_folder_layout(folders):
    before = _tree_hash(folders)
    result = scan(folders)
    frame = result.frame
    assert result.layout == "folders" and result.labels == ["nodule", "normal"]
    assert not result.multilabel and result.skipped == []
    assert list(frame.columns) == ["path", "item", "labels", "patient", "split"]
    assert sorted(frame["item"]) == [
        "nodule/a.dcm",
        "nodule/b.dcm",
        "nodule/c.dcm",
        "normal/n0.png",
        "normal/n1.png",
        "normal/n2.png",
        "normal/sub/deep.png",
    ]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in frame["path"])
    assert frame["split"].isna().all()
    assert result.ignored == ["LICENSE", "nodule/README.txt"]
    # patients from the DICOM header, hashed; PNGs have none
    by_item = frame.set_index("item")["patient"]
    assert by_item["nodule/a.dcm"] == by_item["nodule/b.dcm"] == hash_patient_id("PID-1")
    assert by_item["nodule/c.dcm"] == hash_patient_id("PID-2")
    assert by_item["normal/n0.png"] is None
    dump = frame.to_csv() + repr(result.describe())
    for secret in ("PID-1", "PID-2", "SECRET", "19700101"):
        assert secret not in dump
    assert result.describe()["n_patients"] == 2
    assert _tree_hash(folders) == before  # input never modified


def test_manifest_layout_multilabel_patients_and_splits(tmp_path):
    root = tmp_path / "m"
    for name in ("a.png", "b.png", "c.png", "d.png", "e.png"):
        _png(root / "img" / name)
    _dcm(root / "img" / "f.dcm", "HDR-9")
    (root / "manifest.csv").write_text(
        "path,label,patient_id,split\n"
        "img/a.png,effusion|nodule,P1,train\n"
        "img/b.png,normal,P1,\n"
        "img/c.png, nodule ,P2,test\n"
        "img/d.png,normal,,VAL\n"
        "img/e.png,effusion,,\n"
        "img/f.dcm,normal,,\n"
    )
    before = _tree_hash(root)
    for arg in (root, root / "manifest.csv"):
        result = scan(arg)
        frame = result.frame.set_index("item")
        assert result.layout == "manifest" and result.multilabel
        assert result.labels == ["effusion", "nodule", "normal"]
        assert frame.loc["img/a.png", "labels"] == ["effusion", "nodule"]
        assert frame.loc["img/c.png", "labels"] == ["nodule"]  # stripped
        assert frame.loc["img/a.png", "patient"] == hash_patient_id("P1")
        assert frame.loc["img/d.png", "patient"] is None
        assert frame.loc["img/f.dcm", "patient"] == hash_patient_id("HDR-9")  # from the header
        assert frame["split"].tolist() == ["train", None, "test", "val", None, None]
        assert "P1" not in frame.to_csv()
    assert _tree_hash(root) == before


def test_manifest_without_patient_and_split_columns(tmp_path):
    _png(tmp_path / "x.png")
    _png(tmp_path / "y.png")
    csv = tmp_path / "list.csv"
    csv.write_text("label,path\ncat,x.png\ndog,y.png\n")
    with pytest.raises(DataError, match="only 1 image"):
        scan(csv)  # needs splitting: each class needs 2
    _png(tmp_path / "z.png")
    _png(tmp_path / "w.png")
    csv.write_text("label,path\ncat,x.png\ndog,y.png\ncat,z.png\ndog,w.png\n")
    frame = scan(csv).frame
    assert frame["patient"].isna().all() and frame["split"].isna().all()


# ------------------------------------------------------------------------------- errors


def test_error_missing_path_and_single_file(tmp_path):
    _error(tmp_path / "nowhere", "not found")
    _png(tmp_path / "one.png")
    _error(tmp_path / "one.png", "single file")


def test_error_empty_folder_and_no_images(tmp_path):
    (tmp_path / "empty").mkdir()
    err = _error(tmp_path / "empty", "no class subfolders and no images")
    assert "empty" in err.where
    (tmp_path / "txt" / "a").mkdir(parents=True)
    (tmp_path / "txt" / "a" / "notes.txt").write_text("x")
    _error(tmp_path / "txt", "no images found")


def test_error_images_not_in_class_folders(tmp_path):
    _png(tmp_path / "flat" / "a.png")
    _error(tmp_path / "flat", "not sorted into class folders")


def test_error_loose_image_next_to_classes(folders):
    _png(folders / "stray.png")
    err = _error(folders, "stray.png")
    assert "no class" in err.what
    result = scan(folders, skip_bad=True)
    assert result.skipped == [("stray.png", "not inside a class folder")]


def test_error_empty_class_folder(folders):
    (folders / "effusion").mkdir()
    err = _error(folders, "class folder has no images: effusion")
    assert err.where.endswith("effusion")


def test_error_one_class_only(tmp_path):
    for i in range(3):
        _png(tmp_path / "only" / f"{i}.png")
    _error(tmp_path, "only one class found (only)")


def test_error_class_with_one_item(folders):
    _png(folders / "effusion" / "single.png")
    err = _error(folders, "class 'effusion' has only 1 image")
    assert err.where.endswith("effusion")


def test_error_corrupt_files_named_or_skipped(folders):
    (folders / "normal" / "broken.png").write_bytes(b"not a png at all")
    err = _error(folders, "broken.png")
    assert "unreadable image" in err.what
    (folders / "normal" / "broken.png").unlink()
    good = (folders / "nodule" / "a.dcm").read_bytes()
    (folders / "nodule" / "cut.dcm").write_bytes(good[:-10])
    (folders / "nodule" / "head.dcm").write_bytes(good[:300])
    _error(folders, "cut.dcm")
    result = scan(folders, skip_bad=True)
    skipped = dict(result.skipped)
    assert set(skipped) == {"nodule/cut.dcm", "nodule/head.dcm"}
    assert "truncated" in skipped["nodule/cut.dcm"]
    assert "no pixel data" in skipped["nodule/head.dcm"]
    assert len(result.frame) == 7


def test_manifest_errors(tmp_path):
    for name in ("a.png", "b.png", "c.png", "d.png"):
        _png(tmp_path / name)
    m = tmp_path / "manifest.csv"
    m.write_text("file,label\na.png,x\n")
    err = _error(tmp_path, "no 'path' column")
    assert "manifest.csv" in err.where
    m.write_text("path,class\na.png,x\n")
    _error(tmp_path, "no 'label' column")
    m.write_text("path,label\na.png,x\nmissing.png,y\nb.png,y\nc.png,x\nd.png,y\n")
    err = _error(tmp_path, "file not found")
    assert "missing.png" in str(err) and "line 3" in err.where
    result = scan(tmp_path, skip_bad=True)
    assert [item for item, _ in result.skipped] == ["missing.png"]
    assert len(result.frame) == 4
    m.write_text("path,label\na.png,x\nb.png,\n")
    _error(tmp_path, "no label")
    m.write_text("path,label,split\na.png,x,holdout\n")
    _error(tmp_path, "unknown split")
    m.write_text("path,label\na.png,x\na.png,y\n")
    _error(tmp_path, "listed twice")
    m.write_text("")
    _error(tmp_path, "empty")
    (tmp_path / "notes.txt").write_text("x")
    m.write_text("path,label\na.png,x\nnotes.txt,y\n")
    _error(tmp_path, "not a supported image")


def test_verify_decodes_and_names_bad_images(folders):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise, "L").save(folders / "normal" / "n0.png")
    data = (folders / "normal" / "n0.png").read_bytes()
    (folders / "normal" / "n0.png").write_bytes(data[: len(data) // 2])  # header intact
    result = scan(folders)  # a cheap scan does not decode
    with pytest.raises(DataError, match="n0.png"):
        verify(result)
    kept = verify(scan(folders), skip_bad=True)
    assert len(kept.frame) == 6 and kept.skipped[0][0] == "normal/n0.png"


# ------------------------------------------------------------------------------- splits


def _frame(groups: list[tuple[str | None, list[str]]], splits=None) -> pd.DataFrame:
    rows = []
    for g, (patient, labels) in enumerate(groups):
        for j, label in enumerate(labels):
            rows.append({"path": f"/x/{g}_{j}", "item": f"{g}_{j}", "labels": [label],
                         "patient": patient, "split": None})  # fmt: skip
    frame = pd.DataFrame(rows)
    if splits is not None:
        frame["split"] = splits
    return frame


def _check_no_patient_crosses(out: pd.DataFrame) -> None:
    with_patient = out[out["patient"].notna()]
    assert (with_patient.groupby("patient")["split"].nunique() == 1).all()


def test_splits_grouped_and_stratified():
    rng = np.random.default_rng(0)
    groups = []
    for c, n_patients in (("a", 60), ("b", 30), ("c", 20)):
        for k in range(n_patients):
            groups.append((f"{c}{k}", [c] * int(rng.integers(1, 5))))
    frame = _frame(groups)
    out = assign_splits(frame, val_fraction=0.15, test_fraction=0.2, seed=3)
    _check_no_patient_crosses(out)
    assert set(out["split"]) == {"train", "val", "test"}
    first = out["labels"].map(lambda ls: ls[0])
    for c in ("a", "b", "c"):
        share = out[first == c]["split"].value_counts(normalize=True)
        assert abs(share["test"] - 0.2) < 0.08, (c, share.to_dict())
        assert abs(share["val"] - 0.15) < 0.08, (c, share.to_dict())
    # deterministic for a seed, different for another
    assert out["split"].tolist() == assign_splits(frame, seed=3)["split"].tolist()
    assert out["split"].tolist() != assign_splits(frame, seed=4)["split"].tolist()
    frame_copy = frame.copy()
    assign_splits(frame)
    pd.testing.assert_frame_equal(frame, frame_copy)  # input untouched


def test_given_splits_kept_and_val_carved_from_train():
    groups = [(f"p{i}", ["a" if i % 2 else "b"] * 2) for i in range(40)]
    frame = _frame(groups)
    given = ["test" if i < 16 else ("train" if i < 60 else None) for i in range(80)]
    frame["split"] = given
    out = assign_splits(frame, seed=0)
    _check_no_patient_crosses(out)
    assert (out["split"][:16] == "test").all()
    assert set(out["split"][16:]) == {"train", "val"}  # no val given: carved out of train
    assert set(out["split"]) == {"train", "val", "test"}
    frame["split"] = ["val" if i in (60, 61) else s for i, s in enumerate(given)]
    out = assign_splits(frame, seed=0)
    assert (out["split"][16:60] == "train").all()  # val given: train kept as is


def test_split_errors():
    groups = [("p1", ["a", "a"]), ("p2", ["b", "b"])]
    with pytest.raises(DataError, match="too few patients"):
        assign_splits(_frame(groups))
    frame = _frame([("p1", ["a", "b"]), ("p2", ["a", "b"]), ("p3", ["a", "b"])])
    frame.loc[0, "split"], frame.loc[1, "split"] = "train", "test"
    with pytest.raises(DataError, match="several splits"):
        assign_splits(frame)
    with pytest.raises(DataError, match="only 1 image"):
        assign_splits(_frame([(None, ["a", "a", "b"])]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layout=st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 25)),  # patient (None: own group per row)
            st.integers(0, 3),  # class
            st.integers(1, 4),  # images
            st.sampled_from([None, None, None, "train", "val", "test"]),  # given split
        ),
        min_size=6,
        max_size=40,
    ),
    seed=st.integers(0, 1000),
)
def test_splits_property(layout, seed):
    rows, fixed = [], {}
    for g, (patient, cls, n, split) in enumerate(layout):
        pid = None if patient is None else f"p{patient}"
        if pid is not None:  # one given split per patient, as a valid manifest has
            split = fixed.setdefault(pid, split)
        for j in range(n):
            rows.append({"path": f"/{g}/{j}", "item": f"{g}/{j}", "labels": [f"c{cls}"],
                         "patient": pid, "split": split})  # fmt: skip
    frame = pd.DataFrame(rows)
    counts = frame["labels"].map(lambda ls: ls[0]).value_counts()
    try:
        out = assign_splits(frame, seed=seed)
    except DataError as exc:
        # only for genuinely impossible layouts
        assert counts.min() < 2 or "too few" in str(exc), str(exc)
        return
    _check_no_patient_crosses(out)
    assert set(out["split"]) == {"train", "val", "test"}
    given_ = [v if isinstance(v, str) else None for v in frame["split"]]
    carve = "val" not in given_ and "train" in given_
    for before, after in zip(given_, out["split"], strict=True):
        if before == "train" and carve:
            assert after in ("train", "val")
        elif before is not None:
            assert after == before
    # a class with ≥ 3 free groups and nothing given is present in every split
    groups = frame.assign(g=[p if p else f"row{i}" for i, p in enumerate(frame["patient"])])
    for cls, part in groups.groupby(groups["labels"].map(lambda ls: ls[0])):
        if all(given_[i] is None for i in part.index) and part["g"].nunique() >= 3:
            mixed = groups[groups["g"].isin(part["g"])]
            if (mixed["labels"].map(lambda ls: ls[0]) == cls).all():
                assert set(out.loc[part.index, "split"]) == {"train", "val", "test"}, cls
