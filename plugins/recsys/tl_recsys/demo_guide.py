"""What `tl demo recsys DIR` generated and the three commands to run on it (no torch)."""

from __future__ import annotations

import shlex
from pathlib import Path

from tl.core import DemoGuide

ABOUT = """\
Interaction logs of two markets that share part of one catalogue (same item ids):
long-tail popularity, users with a taste for a few categories that drifts over time, series
whose episodes are watched in order. Market B has few users, so it gains from market A: pretrain
SASRec on A, fine-tune on B (shared items keep their embeddings), then recommend for new B
users."""


def guide(root: Path) -> DemoGuide:
    def data(name: str) -> str:
        return shlex.quote(str(root / name))

    return DemoGuide(
        files=[
            (
                "market_a.csv",
                "source market A, many users (`user_id,item_id,timestamp,rating`, Unix seconds): "
                "for `tl pretrain`",
            ),
            ("market_b.csv", "target market B, few users, same columns: for `tl run`"),
            (
                "recent.csv",
                "histories of new market-B users (no rating; timestamps as text): the file to "
                "score — `tl predict` recommends their next items",
            ),
        ],
        commands=[
            f"tl pretrain recsys --data {data('market_a.csv')} --epochs 10 --batch-size 128",
            f"tl run recsys --data {data('market_b.csv')} "
            f"--weights {DemoGuide.latest_run('pretrain-recsys')} --epochs 10",
            f"tl predict {DemoGuide.latest_run('recsys')} --data {data('recent.csv')} "
            "--out recsys-recommendations.csv",
        ],
        about=ABOUT,
    )
