"""What `tl demo medical DIR` generated and the two commands to run on it (no torch)."""

from __future__ import annotations

import shlex
from pathlib import Path

from tl.core import DemoGuide

from .anatomy import CLASSES

ABOUT = """\
Synthetic chest radiographs, one folder per class — the layout `tl run medical` reads. Most
images are 16-bit DICOM (DX/CR, some MONOCHROME1, rescale slopes, window center/width,
synthetic patient IDs and names, which tl hashes or never writes out); the rest are 8-bit PNG
exports. A patient has 2–4 DICOM follow-ups, and splits keep a patient's images together.
Mean brightness does not separate the classes; only the lesion does. There is one dataset
(no source/target pair): fine-tune on it, then score images with the exported ONNX model.
For transfer without the hub, train on a second, larger demo first (`tl demo medical SOURCE
--size full --seed 1`, `tl run medical --data SOURCE …`) and pass that run to `--weights`."""

_WHAT = {
    "normal": "class `normal`: no lesion",
    "nodule": "class `nodule`: 1–3 small round opacities in a lung field",
    "effusion": "class `effusion`: a meniscus-shaped opacity blunting one costophrenic angle",
}


def guide(root: Path) -> DemoGuide:
    data = shlex.quote(str(root))
    return DemoGuide(
        files=[(f"{name}/", f"{_WHAT[name]} (`.dcm` and `.png` images)") for name in CLASSES],
        commands=[
            f"tl run medical --data {data} --backbone resnet10t --weights none "
            "--image-size 96 --epochs 8 --lr 3e-3",
            f"tl predict {DemoGuide.latest_run('medical')} --data {data} "
            "--out medical-predictions.csv",
        ],
        about=ABOUT,
    )
