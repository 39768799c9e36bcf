"""What `tl demo driving DIR` generated and the three commands to run on it (no torch)."""

from __future__ import annotations

import shlex
from pathlib import Path

from tl.core import DemoGuide

from .demo import CLASSES

ABOUT = f"""\
Road scenes from a camera on the ground plane: far objects small and high in the frame, near
ones large and low, near ones partly hiding far ones; boxes are amodal, like KITTI's. Classes:
{", ".join(f"`{name}`" for name in CLASSES)}. The transfer: train the detector on the day city
(the source scene), fine-tune it on the few night frames (the target: dark, headlights and
street lamps, fog in half of them), then detect on night images."""

#: what both trainings share: a small backbone that trains on CPU in minutes, at the frames'
#: own width (the default --image-size: far pedestrians and signs are only a few pixels wide)
MODEL = "--backbone resnet10t"


def _domain(name: str, role: str, images: str) -> list[tuple[str, str]]:
    return [
        (f"{name}/", f"{role} (YOLO layout)"),
        (f"{name}/images/", images),
        (f"{name}/labels/", "one YOLO `.txt` per image: `class cx cy w h`, normalised"),
        (f"{name}/data.yaml", "class names (`names`, `nc`) and the domain"),
    ]


def guide(root: Path) -> DemoGuide:
    def data(name: str) -> str:
        return shlex.quote(str(root / name))

    return DemoGuide(
        files=[
            *_domain(
                "day",
                "source scene: daytime city, labelled — for `tl pretrain`",
                "day frames (JPEG)",
            ),
            *_domain(
                "night",
                "target scene: night, few labelled frames — for `tl run`",
                "night frames (JPEG): the folder to score with `tl predict`",
            ),
        ],
        commands=[
            f"tl pretrain driving --data {data('day')} {MODEL} --weights none --epochs 30",
            f"tl run driving --data {data('night')} {MODEL} "
            f"--weights {DemoGuide.latest_run('pretrain-driving')} --epochs 25 --lr 1e-3",
            f"tl predict {DemoGuide.latest_run('driving')} --data {data('night/images')} "
            "--out driving-detections.csv",
        ],
        about=ABOUT,
    )
