"""Readers, letterbox and demo: real files, bad inputs included. No torch needed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tl.core import DataError
from tl_driving.readers import read_dataset
from tl_driving.records import Letterbox, canvas_size


def _image(path: Path, size=(64, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(path)


def _yolo(root: Path, labels: dict[str, str], names=("car", "person")) -> Path:
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(json.dumps({"names": list(names)}))
    for stem, text in labels.items():
        _image(root / "images" / f"{stem}.png")
        if text is not None:
            (root / "labels").mkdir(exist_ok=True)
            (root / "labels" / f"{stem}.txt").write_text(text)
    return root


def test_yolo_boxes_in_pixels_and_missing_label_means_no_objects(tmp_path):
    root = _yolo(tmp_path, {"a": "1 0.5 0.5 0.5 0.25\n", "b": None})
    found = read_dataset(root)
    assert found.layout == "yolo" and found.labels == ["car", "person"]
    a, b = found.records
    np.testing.assert_allclose(a.boxes, [[16, 18, 48, 30]])
    assert a.labels.tolist() == [1]
    assert len(b.boxes) == 0


@pytest.mark.parametrize(
    "line, message",
    [
        ("0 0.9 0.5 0.4 0.2", "outside the image"),
        ("7 0.5 0.5 0.1 0.1", "unknown class id 7"),
        ("0 0.5 0.5", "expected 5 fields"),
        ("0 0.5 0.5 0 0.1", "no area"),
    ],
)
def test_bad_yolo_label_names_file_and_line(tmp_path, line, message):
    root = _yolo(tmp_path, {"good": "0 0.5 0.5 0.2 0.2\n", "bad": f"0 0.5 0.5 0.2 0.2\n{line}\n"})
    with pytest.raises(DataError) as info:
        read_dataset(root)
    assert message in info.value.what
    assert info.value.where.endswith("bad.txt:2")
    found = read_dataset(root, skip_bad=True)
    assert [r.path.stem for r in found.records] == ["good"] and len(found.skipped) == 1
    (skipped,) = found.skipped  # the image, and why: the label file and line
    assert skipped.item == "images/bad.png"
    assert message in skipped.reason and skipped.reason.endswith("bad.txt:2)")


def test_corrupt_image_and_empty_dataset(tmp_path):
    root = _yolo(tmp_path / "d", {"good": "0 0.5 0.5 0.2 0.2\n"})
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match="corrupt") as info:
        read_dataset(root)
    assert "broken.png" in info.value.where
    assert len(read_dataset(root, skip_bad=True).skipped) == 1
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="no usable images"):
        read_dataset(empty)
    with pytest.raises(DataError, match="does not exist"):
        read_dataset(tmp_path / "nowhere")


def test_yolo_split_folders(tmp_path):
    for split in ("train", "val"):
        _image(tmp_path / "images" / split / f"{split}.png")
        (tmp_path / "labels" / split).mkdir(parents=True)
        (tmp_path / "labels" / split / f"{split}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text("names: [car]\ntrain: images/train\nval: images/val\n")
    found = read_dataset(tmp_path)
    assert found.has_splits and sorted(r.split for r in found.records) == ["train", "val"]


def test_coco_with_crowd_as_ignore(tmp_path):
    _image(tmp_path / "images" / "x.png")
    coco = {
        "images": [{"id": 5, "file_name": "x.png", "width": 64, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 3, "bbox": [1, 2, 10, 20], "iscrowd": 0},
            {"id": 2, "image_id": 5, "category_id": 3, "bbox": [30, 2, 10, 20], "iscrowd": 1},
        ],
        "categories": [{"id": 3, "name": "car"}, {"id": 9, "name": "sign"}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    found = read_dataset(tmp_path / "annotations.json")
    assert found.labels == ["car", "sign"]
    np.testing.assert_allclose(found.records[0].boxes, [[1, 2, 11, 22]])
    np.testing.assert_allclose(found.records[0].ignore, [[30, 2, 40, 22]])
    coco["annotations"][0]["category_id"] = 4
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    with pytest.raises(DataError, match="unknown category_id 4"):
        read_dataset(tmp_path)


def test_kitti_dontcare_is_ignore(tmp_path):
    _image(tmp_path / "image_2" / "000001.png", (100, 50))
    (tmp_path / "label_2").mkdir()
    (tmp_path / "label_2" / "000001.txt").write_text(
        "Pedestrian 0 0 0 10 5 20 45 1.7 0.6 0.8 1 1 10 0\n"
        "Car 0.1 1 0 40 10 90 40 1.5 1.6 4 2 1 20 0\n"
        "DontCare -1 -1 -10 0 0 8 8 -1 -1 -1 -1000 -1000 -1000 -10\n"
    )
    found = read_dataset(tmp_path)
    assert found.layout == "kitti" and found.labels == ["Car", "Pedestrian"]
    record = found.records[0]
    assert record.labels.tolist() == [1, 0] and len(record.ignore) == 1
    (tmp_path / "label_2" / "000001.txt").write_text("Car 0 0 0 40 10 190 40 1 1 1 1 1 1 0\n")
    with pytest.raises(DataError, match="outside the 100x50 image"):
        read_dataset(tmp_path)


def test_letterbox_round_trip():
    box = Letterbox.fit(200, 100, 160, 96)
    assert (box.pad_x, box.pad_y, box.scale) == (0, 8, 0.8)
    boxes = np.array([[10, 20, 110, 90]], np.float32)
    np.testing.assert_allclose(box.to_image(box.to_canvas(boxes), 200, 100), boxes, atol=1e-4)
    assert canvas_size(250, 0.5625) == (160, 256)


def test_demo_scenes_are_plausible(scenes):
    day, night = read_dataset(scenes / "day"), read_dataset(scenes / "night")
    assert day.labels == ["car", "pedestrian", "cyclist", "traffic_sign"]
    assert len(day.records) == 80 and len(night.records) == 36
    boxes = np.concatenate([r.boxes for r in day.records])
    labels = np.concatenate([r.labels for r in day.records])
    assert set(labels.tolist()) == {0, 1, 2, 3}
    heights = boxes[:, 3] - boxes[:, 1]
    bottoms = boxes[:, 3]
    cars = labels == 0
    # perspective: nearer (lower) cars are taller
    assert np.corrcoef(bottoms[cars], heights[cars])[0, 1] > 0.8
    brightness = [np.asarray(Image.open(r.path)).mean() for r in (day.records[0], night.records[0])]
    assert brightness[0] > 2 * brightness[1]


def test_training_without_the_train_extra_is_a_one_line_error(tmp_path, monkeypatch):
    from tl.core import Config, PluginError, RunConfig
    from tl_driving.options import DrivingOptions
    from tl_driving.plugin import DrivingPlugin

    monkeypatch.setitem(sys.modules, "torchmetrics", None)
    root = _yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"})
    with pytest.raises(PluginError) as info:
        DrivingPlugin().load(root, Config(RunConfig(), DrivingOptions()))
    assert "torchmetrics" in info.value.what and "[train]" in info.value.what
    assert len(info.value.line().splitlines()) == 1
