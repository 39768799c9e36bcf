"""Fuzzing the driving readers: YOLO labels and data.yaml, COCO JSON, KITTI labels.

Every case ends in records or a `DataError`; boxes that come through are finite, inside
the image, and the ones written (YOLO's normalised → pixel conversion checked exactly).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from fuzzkit import FUZZ, result_or_tl_error
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from tl_driving.readers import read_dataset

W, H = 40, 24
fields = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-3, 12).map(str),
    st.sampled_from(["nan", "inf", "-0", "1e309", "", "x", "0.5", "1", "0", "Car", "DontCare"]),
)
lines = st.lists(fields, min_size=0, max_size=16).map(" ".join)


def _image(path: Path, good: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if good:
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(path)
    else:
        path.write_bytes(b"\x89PNG broken")


def _check(found) -> None:
    for record in found.records:
        boxes = record.boxes
        assert np.isfinite(boxes).all()
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= record.width).all()
        assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= record.height).all()
        assert len(record.labels) == len(boxes)
        assert ((record.labels >= 0) & (record.labels < max(1, len(found.labels)))).all()


@FUZZ
@given(
    label_lines=st.lists(lines, max_size=5),
    yaml_text=st.one_of(
        st.none(),
        st.sampled_from(
            [
                "names: [car, person]",
                "names: {0: car, 1: person}",
                "names: {a: car}",
                "names: 3",
                "names: [",
                "{}",
                "names: [car]\ntrain: ../../etc",
                "- a\n- b",
                "names: [car, person]\ntrain: 5",
            ]
        ),
    ),  # fmt: skip
    encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]),
    good_image=st.booleans(),
    skip_bad=st.booleans(),
)
def test_yolo_layouts(label_lines, yaml_text, encoding, good_image, skip_bad):
    root = Path(tempfile.mkdtemp(prefix="tlfuzz-")) / "yolo"
    _image(root / "images" / "a.png", good_image)
    _image(root / "images" / "b.png")
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "a.txt").write_bytes("\n".join(label_lines).encode(encoding))
    if yaml_text is not None:
        (root / "data.yaml").write_text(yaml_text)
    found, _ = result_or_tl_error(lambda: read_dataset(root, skip_bad))
    if found is not None:
        _check(found)


@FUZZ
@given(cx=st.floats(0, 1), cy=st.floats(0, 1), w=st.floats(0.001, 1), h=st.floats(0.001, 1))
def test_yolo_boxes_are_the_written_ones(cx, cy, w, h):
    root = Path(tempfile.mkdtemp(prefix="tlfuzz-")) / "yolo"
    _image(root / "images" / "a.png")
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "a.txt").write_text(f"0 {cx!r} {cy!r} {w!r} {h!r}\n")
    found, error = result_or_tl_error(lambda: read_dataset(root))
    inside = (
        cx - w / 2 >= -1e-3
        and cy - h / 2 >= -1e-3
        and cx + w / 2 <= 1 + 1e-3
        and cy + h / 2 <= 1 + 1e-3
    )
    if inside:
        assert error is None, error.line()
        expected = np.clip([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 0, 1) * [W, H, W, H]
        np.testing.assert_allclose(found.records[0].boxes[0], expected, rtol=1e-5, atol=1e-4)
    else:
        assert error is not None


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 5),
        st.floats(allow_nan=True),
        st.text(max_size=5),
        st.just("a.png"),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(
                ["id", "bbox", "image_id", "category_id", "file_name", "name", "iscrowd", "width"]
            ),
            children,
            max_size=5,
        ),
    ),  # fmt: skip
    max_leaves=12,
)


@FUZZ
@given(
    images=st.one_of(json_values, st.just([{"id": 1, "file_name": "a.png"}])),
    annotations=st.one_of(
        json_values,
        st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.integers(0, 3),
                    "image_id": st.integers(0, 2),
                    "category_id": st.integers(0, 3),
                    "bbox": st.lists(
                        st.one_of(
                            st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=2)
                        ),
                        min_size=0,
                        max_size=5,
                    ),
                    "iscrowd": st.integers(0, 1),
                }
            ),
            max_size=4,
        ),
    ),  # fmt: skip
    categories=st.one_of(json_values, st.just([{"id": 1, "name": "car"}, {"id": 2, "name": 3}])),
    raw=st.one_of(st.none(), st.binary(max_size=50)),
    skip_bad=st.booleans(),
)
def test_coco_json(images, annotations, categories, raw, skip_bad):
    root = Path(tempfile.mkdtemp(prefix="tlfuzz-"))
    _image(root / "a.png")
    path = root / "ann.json"
    if raw is not None:
        path.write_bytes(raw)
    else:
        doc = {"images": images, "annotations": annotations, "categories": categories}
        path.write_text(json.dumps(doc))
    found, _ = result_or_tl_error(lambda: read_dataset(path, skip_bad))
    if found is not None:
        _check(found)


@FUZZ
@given(label_lines=st.lists(lines, max_size=4), encoding=st.sampled_from(["utf-8", "utf-16"]),
       skip_bad=st.booleans())  # fmt: skip
def test_kitti_labels(label_lines, encoding, skip_bad):
    root = Path(tempfile.mkdtemp(prefix="tlfuzz-")) / "kitti"
    _image(root / "image_2" / "000001.png")
    (root / "label_2").mkdir(parents=True)
    good = "Car 0.0 0 0.0 1 2 30 20 1.5 1.6 3.9 1.0 1.7 8.0 0.1"
    (root / "label_2" / "000001.txt").write_bytes("\n".join([good, *label_lines]).encode(encoding))
    found, _ = result_or_tl_error(lambda: read_dataset(root, skip_bad))
    if found is not None:
        _check(found)
