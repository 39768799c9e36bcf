"""Transfer: a detector trained on day scenes, fine-tuned on 12 night frames, beats the
same detector trained on those 12 night frames from scratch (night mAP50)."""

from __future__ import annotations

import torch
from tl.core import BackboneSpec
from tl_driving.dataset import DetectionDataset, collate
from tl_driving.evaluation import detection_metrics
from tl_driving.loss import detection_loss
from tl_driving.model import build_detector, level_points
from tl_driving.postprocess import DetectorWithNms
from tl_driving.readers import read_dataset

CANVAS = (96, 160)
NIGHT_TRAIN = 12
MARGIN = 0.05


def _train(model, records, steps: int, lr: float) -> None:
    points = level_points(*CANVAS)
    dataset = DetectionDataset(records, CANVAS, augment=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.15)
    generator = torch.Generator().manual_seed(0)
    step = 0
    model.train()
    while step < steps:
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=16, shuffle=True, collate_fn=collate, generator=generator
        )
        for images, targets in loader:
            loss = detection_loss(model(images), targets, *points)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step == steps:
                return


def _map50(model, records, labels) -> float:
    wrapped = DetectorWithNms(model.eval(), CANVAS)
    outputs = []
    with torch.inference_mode():
        loader = torch.utils.data.DataLoader(
            DetectionDataset(records, CANVAS), batch_size=16, collate_fn=collate
        )
        for images, targets in loader:
            outputs.append({"detections": wrapped(images), "targets": targets})
    return detection_metrics(outputs, labels)[0]["map50"]


def _detector():
    return build_detector(BackboneSpec("mobilenetv3_small_050", "none"), 4, channels=32)


def test_day_pretraining_beats_scratch_on_night(scenes, one_thread):
    day, night = read_dataset(scenes / "day"), read_dataset(scenes / "night")
    night_train, night_test = night.records[:NIGHT_TRAIN], night.records[NIGHT_TRAIN:]
    torch.manual_seed(0)
    transferred = _detector()
    _train(transferred, day.records, steps=80, lr=5e-3)
    _train(transferred, night_train, steps=20, lr=1e-3)
    torch.manual_seed(0)
    scratch = _detector()
    _train(scratch, night_train, steps=20, lr=3e-3)
    gained = _map50(transferred, night_test, night.labels)
    alone = _map50(scratch, night_test, night.labels)
    assert gained > alone + MARGIN, (gained, alone)
