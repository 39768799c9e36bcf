"""`tl demo fraud DIR`: generated card transactions with realistic fraud patterns.

Three patterns make up the fraud (about 1 %): card-testing bursts of tiny online amounts,
a foreign country with a high amount, and night-time e-commerce on a new device. Legitimate
look-alikes (travellers, night owls, small online purchases) keep the task honest, and a
share of fraud follows no pattern at all. Two markets: a large unlabelled ``history``
(Parquet) and a smaller, shifted, labelled ``new_market`` (CSV: other home country, price
level and merchant mix, a new channel, a column added and one gone), plus ``today.csv``
to score (`demo_guide.py` says so in the demo's README.md). No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tl.core import ConfigError, atomic_path, write_text_atomic

SIZES = {"small": (20_000, 6_000, 500), "full": (200_000, 40_000, 2_000)}
MERCHANTS = [
    "grocery", "restaurants", "fuel", "pharmacy", "apparel", "electronics",
    "travel", "jewelry", "online_services", "gaming", "digital_goods", "utilities",
]  # fmt: skip
FOREIGN = ["US", "GB", "FR", "NG", "RU", "CN", "MX", "TR", "IN", "AE"]


@dataclass(frozen=True)
class Market:
    home: str
    price_level: float
    merchant_weights: tuple[float, ...]
    channels: dict[str, float]
    foreign_share: float
    device_os: bool
    installments: bool


HISTORY = Market(
    home="DE",
    price_level=1.0,
    merchant_weights=(22, 14, 10, 6, 8, 5, 4, 2, 10, 5, 6, 8),
    channels={"pos": 0.42, "contactless": 0.28, "ecommerce": 0.25, "atm": 0.05},
    foreign_share=0.06,
    device_os=True,
    installments=False,
)
NEW_MARKET = Market(
    home="BR",
    price_level=1.6,
    merchant_weights=(18, 16, 12, 7, 10, 8, 3, 2, 8, 6, 4, 6),
    channels={"pos": 0.30, "contactless": 0.15, "ecommerce": 0.30, "atm": 0.05, "wallet": 0.20},
    foreign_share=0.04,
    device_os=False,
    installments=True,
)


def write_demo(out_dir: Path, size: str = "small", seed: int = 0) -> Path:
    if size not in SIZES:
        raise ConfigError(f"unknown demo size '{size}'", "--size", "use small or full")
    n_history, n_market, n_today = SIZES[size]
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    history = generate(HISTORY, n_history, rng, "2024-01-01", days=180, fraud_rate=0.01)
    market = generate(NEW_MARKET, n_market + n_today, rng, "2024-07-01", days=75, fraud_rate=0.012)
    today = market.iloc[n_market:].drop(columns=["is_fraud"]).reset_index(drop=True)
    market = market.iloc[:n_market].reset_index(drop=True)
    with atomic_path(out_dir / "history.parquet") as tmp:
        history.drop(columns=["is_fraud"]).to_parquet(tmp, index=False)
    write_text_atomic(out_dir / "new_market.csv", market.to_csv(index=False))
    write_text_atomic(out_dir / "today.csv", today.to_csv(index=False))
    return out_dir


def generate(
    market: Market, n: int, rng: np.random.Generator, start: str, days: int, fraud_rate: float
) -> pd.DataFrame:
    """``n`` time-ordered transactions of ``market`` with an ``is_fraud`` column."""
    fraud = rng.random(n) < fraud_rate
    pattern = np.where(fraud, rng.choice(4, size=n, p=[0.35, 0.3, 0.25, 0.1]), -1)
    n_cards = max(50, n // 12)
    card = rng.integers(0, n_cards, size=n)
    card_age = rng.exponential(700, size=n_cards).astype(int)[card] + 1
    avg_amount = np.round(market.price_level * rng.lognormal(np.log(55), 0.6, n_cards)[card], 2)

    merchant_p = np.asarray(market.merchant_weights, dtype=float)
    merchant = rng.choice(len(MERCHANTS), size=n, p=merchant_p / merchant_p.sum())
    channel_names = list(market.channels)
    channel = rng.choice(channel_names, size=n, p=list(market.channels.values()))
    hour = (rng.normal(14, 4.5, n) % 24).astype(float)
    foreign = rng.random(n) < market.foreign_share
    amount_factor = rng.lognormal(0, 0.7, n) * np.select(
        [merchant == MERCHANTS.index("travel"), merchant == MERCHANTS.index("electronics"),
         merchant == MERCHANTS.index("grocery")], [3.0, 2.0, 0.6], 1.0,
    )  # fmt: skip
    amount_factor[foreign] *= rng.lognormal(0.6, 0.6, foreign.sum())
    online = channel == "ecommerce"
    new_device = rng.random(n) < np.where(online, 0.07, 0.015)
    n_tx_1h = rng.poisson(0.3, n)
    n_tx_24h = n_tx_1h + rng.poisson(2.0, n)
    distinct_merchants = rng.poisson(5, n) + 1

    def pick(mask: np.ndarray, names: list[str]) -> np.ndarray:
        return np.asarray([MERCHANTS.index(m) for m in names])[
            rng.integers(0, len(names), mask.sum())
        ]

    testing = pattern == 0
    merchant[testing] = pick(testing, ["online_services", "gaming", "digital_goods"])
    channel[testing] = "ecommerce"
    amount_factor[testing] = rng.uniform(0.5, 5.0, testing.sum()) / avg_amount[testing]
    n_tx_1h[testing] = rng.integers(4, 25, testing.sum())
    n_tx_24h[testing] = n_tx_1h[testing] + rng.poisson(3, testing.sum())
    new_device[testing] = rng.random(testing.sum()) < 0.5

    abroad = pattern == 1
    foreign[abroad] = True
    merchant[abroad] = pick(abroad, ["electronics", "jewelry", "travel", "apparel"])
    amount_factor[abroad] = rng.lognormal(np.log(6), 0.5, abroad.sum())
    channel[abroad] = rng.choice(["pos", "ecommerce"], abroad.sum())

    night = pattern == 2
    hour[night] = rng.uniform(0, 5.5, night.sum())
    channel[night] = "ecommerce"
    new_device[night] = rng.random(night.sum()) < 0.85
    amount_factor[night] = rng.lognormal(np.log(2.5), 0.6, night.sum())
    card_age[night] = np.minimum(card_age[night], rng.integers(1, 120, night.sum()))
    # pattern 3: fraud that looks like ordinary spending (caps achievable recall)

    country = np.where(foreign, rng.choice(FOREIGN, n), market.home)
    amount = np.round(np.maximum(0.5, avg_amount * amount_factor), 2)
    day = np.sort(rng.uniform(0, days, n)).astype(int)
    ts = pd.Timestamp(start) + pd.to_timedelta(day, unit="D") + pd.to_timedelta(hour, unit="h")
    device_type = np.where(
        channel == "ecommerce", rng.choice(["mobile", "desktop"], n, p=[0.65, 0.35]), "terminal"
    ).astype(object)
    device_type[rng.random(n) < 0.03] = None
    avg_amount_col = avg_amount.astype(object)
    avg_amount_col[(card_age < 30) & (rng.random(n) < 0.5)] = None

    frame = pd.DataFrame(
        {
            "transaction_id": [f"{market.home}{i:08d}" for i in range(n)],
            "card_id": [f"{market.home}-c{c:06d}" for c in card],
            "ts": ts.strftime("%Y-%m-%d %H:%M:%S"),
            "amount": amount,
            "merchant_category": np.asarray(MERCHANTS)[merchant],
            "country": country,
            "channel": channel,
            "device_type": device_type,
            "new_device": new_device,
            "card_age_days": card_age,
            "avg_amount_30d": pd.to_numeric(pd.Series(avg_amount_col)),
            "n_tx_1h": n_tx_1h,
            "n_tx_24h": n_tx_24h,
            "distinct_merchants_7d": distinct_merchants,
        }
    )
    if market.device_os:
        frame["device_os"] = np.where(
            channel == "ecommerce", rng.choice(["android", "ios", "windows", "macos"], n), None
        )
    if market.installments:
        frame["installments"] = rng.choice(
            [1, 2, 3, 6, 10, 12], n, p=[0.5, 0.15, 0.15, 0.1, 0.05, 0.05]
        )
    frame["is_fraud"] = fraud.astype(np.int64)
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)
