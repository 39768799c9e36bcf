"""Generated interaction logs with the structure real ones have, for two markets.

Long-tail popularity, users with a taste for a few categories that drifts over time,
series whose episodes are watched in order, and timestamps. Market A and market B share
part of the catalogue (same item ids); B has fewer users, so it gains from A.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tl.core import ConfigError, write_text_atomic

START = 1_672_531_200  # 2023-01-01 UTC


@dataclass(frozen=True)
class DemoSize:
    n_items: int
    n_categories: int
    users_a: int
    users_b: int
    users_recent: int
    mean_length: float


SIZES = {
    "small": DemoSize(500, 12, 1500, 250, 60, 14.0),
    "full": DemoSize(5000, 40, 20000, 3000, 500, 24.0),
}


@dataclass
class Catalogue:
    ids: np.ndarray
    category: np.ndarray
    series: np.ndarray  # -1 for standalone items
    episode: np.ndarray
    next_episode: np.ndarray  # index of the next episode, -1 if none
    popularity: np.ndarray
    market: np.ndarray  # "both" | "a" | "b"


def make_catalogue(size: DemoSize, rng: np.random.Generator) -> Catalogue:
    n = size.n_items
    category = np.empty(n, np.int64)
    series = np.full(n, -1, np.int64)
    episode = np.zeros(n, np.int64)
    next_episode = np.full(n, -1, np.int64)
    market = np.empty(n, object)
    i, s = 0, 0
    while i < n:
        length = int(rng.integers(3, 9)) if rng.random() < 0.45 else 1
        length = min(length, n - i)
        block = slice(i, i + length)
        category[block] = rng.integers(size.n_categories)
        market[block] = rng.choice(["both", "a", "b"], p=[0.5, 0.25, 0.25])
        if length > 1:
            series[block] = s
            episode[block] = np.arange(length)
            next_episode[i : i + length - 1] = np.arange(i + 1, i + length)
            s += 1
        i += length
    rank = rng.permutation(n) + 1
    popularity = rank**-1.1 * np.exp(-0.35 * episode)
    ids = np.array([f"i{j:05d}" for j in rng.permutation(n)])
    return Catalogue(ids, category, series, episode, next_episode, popularity, market)


def simulate_users(
    cat: Catalogue,
    allowed: np.ndarray,
    n_users: int,
    size: DemoSize,
    prefix: str,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Interaction rows for ``n_users`` users of a market whose items are ``allowed``."""
    pop = cat.popularity * np.exp(rng.normal(0.0, 0.3, len(cat.popularity))) * allowed
    by_category = [np.flatnonzero(allowed & (cat.category == c)) for c in range(size.n_categories)]
    live = np.array([len(items) > 0 for items in by_category], float)
    rows: list[tuple[str, str, int, int]] = []
    for u in range(n_users):
        taste = rng.dirichlet(np.full(size.n_categories, 0.3)) * live
        taste /= taste.sum()
        length = 3 + int(rng.gamma(1.5, (size.mean_length - 3) / 1.5))
        t = START + int(rng.integers(0, 300 * 86400))
        seen: set[int] = set()
        current = -1
        for _ in range(length):
            item = _next_item(cat, current, seen, taste, by_category, pop, allowed, rng)
            if item < 0:
                break
            seen.add(item)
            current = item
            t += int(rng.exponential(3600 if cat.series[item] >= 0 else 86400))
            rating = int(np.clip(round(rng.normal(4.0, 0.9)), 1, 5))
            rows.append((f"{prefix}{u:05d}", str(cat.ids[item]), t, rating))
            if rng.random() < 0.08:  # taste drifts towards a new category
                shift = rng.dirichlet(np.full(size.n_categories, 0.3)) * live
                taste = 0.6 * taste + 0.4 * shift / shift.sum()
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])


def _next_item(
    cat: Catalogue,
    current: int,
    seen: set[int],
    taste: np.ndarray,
    by_category: list[np.ndarray],
    pop: np.ndarray,
    allowed: np.ndarray,
    rng: np.random.Generator,
) -> int:
    if current >= 0:
        nxt = cat.next_episode[current]
        if nxt >= 0 and allowed[nxt] and nxt not in seen and rng.random() < 0.75:
            return int(nxt)
    if current >= 0 and rng.random() < 0.5:
        category = cat.category[current]
    else:
        category = rng.choice(len(taste), p=taste)
    candidates = by_category[category]
    weights = pop[candidates] * np.array([c not in seen for c in candidates])
    # a new series usually starts at its first episode
    weights = weights * np.where(cat.episode[candidates] == 0, 1.0, 0.15)
    if weights.sum() <= 0:
        return -1
    return int(rng.choice(candidates, p=weights / weights.sum()))


def write_demo(out_dir: Path, size: str = "small", seed: int = 0) -> Path:
    """Write market_a.csv, market_b.csv and recent.csv (new market-B users). The model reads
    item ids only, so the catalogue's categories and series stay inside the generator."""
    if size not in SIZES:
        raise ConfigError(f"unknown demo size '{size}'", "--size", "use small or full")
    spec = SIZES[size]
    rng = np.random.default_rng(seed)
    cat = make_catalogue(spec, rng)
    in_a = cat.market != "b"
    in_b = cat.market != "a"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    market_a = simulate_users(cat, in_a, spec.users_a, spec, "a", rng)
    market_b = simulate_users(cat, in_b, spec.users_b, spec, "b", rng)
    recent = simulate_users(cat, in_b, spec.users_recent, spec, "r", rng)
    recent["timestamp"] = pd.to_datetime(recent["timestamp"], unit="s").dt.strftime(
        "%Y-%m-%d %H:%M:%S"
    )
    for name, frame in (
        ("market_a.csv", market_a),
        ("market_b.csv", market_b),
        ("recent.csv", recent.drop(columns="rating")),
    ):
        write_text_atomic(out_dir / name, frame.to_csv(index=False))
    return out_dir
