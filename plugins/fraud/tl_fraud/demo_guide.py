"""What `tl demo fraud DIR` generated and the three commands to run on it (no torch)."""

from __future__ import annotations

import shlex
from pathlib import Path

from tl.core import DemoGuide

ABOUT = """\
Card transactions of two markets. Fraud (about 1 %) follows three patterns — card-testing
bursts of tiny online amounts, a foreign country with a high amount, night-time e-commerce on
a new device — and some fraud shows no visible pattern; legitimate look-alikes (travellers,
night owls, small online purchases) keep the task honest. The transfer: pretrain on the home
market's unlabelled history, fine-tune on the shifted new market's labels, score today."""

#: flags both tables need: the time split and no id columns as features
TABLE = "--time-column ts --drop transaction_id --drop card_id"


def guide(root: Path) -> DemoGuide:
    def data(name: str) -> str:
        return shlex.quote(str(root / name))

    return DemoGuide(
        files=[
            ("history.parquet", "source market (DE): unlabelled transactions, for `tl pretrain`"),
            (
                "new_market.csv",
                "target market (BR), labelled (`is_fraud`): other price level and merchant mix, "
                "a new `wallet` channel, an `installments` column, no `device_os` — for `tl run`",
            ),
            ("today.csv", "later target-market transactions without labels: the file to score"),
        ],
        commands=[
            f"tl pretrain fraud --data {data('history.parquet')} {TABLE} --epochs 3 "
            "--batch-size 256",
            f"tl run fraud --data {data('new_market.csv')} --target is_fraud {TABLE} "
            f"--weights {DemoGuide.latest_run('pretrain-fraud')} --epochs 10 --batch-size 128",
            f"tl predict {DemoGuide.latest_run('fraud')} --data {data('today.csv')} "
            "--out fraud-scores.csv",
        ],
        about=ABOUT,
    )
