"""Recsys at scale: 100k items, 1M interactions — one training epoch and a full-ranking
evaluation within memory. Prints seconds per epoch, evaluation seconds and peak RSS.

    python tests/bench/recsys_scale.py [--items 10000] [--interactions 100000] [--threads 1]
    python tests/bench/recsys_scale.py --full      # 100k items, 1M interactions, 20k users

`main()` returns the shared bench record: ours = peak RSS (MB), baseline = the memory budget
``--max-rss-mb`` (default 4096); target ratio ≤ 1. Seconds per epoch/evaluation are extras.

Run on demand (not part of the test suite). The catalogue is above the full-softmax limit,
so the plugin's ``--loss auto`` trains with sampled softmax; evaluation still ranks every
user's target against all items.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import result  # noqa: E402


def synthetic_log(path: Path, n_items: int, n_rows: int, n_users: int, seed: int = 0) -> None:
    """Zipf item popularity, users with geometric-ish history lengths, increasing timestamps."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.9
    items = rng.choice(n_items, size=n_rows, p=weights / weights.sum())
    items[rng.choice(n_rows, n_items, replace=False)] = np.arange(n_items)  # all items occur
    users = np.sort(rng.integers(0, n_users, n_rows))
    frame = pd.DataFrame(
        {
            "user_id": users,
            "item_id": rng.permutation(n_items)[items],
            "timestamp": 1_700_000_000 + np.arange(n_rows),
        }
    )
    frame.to_parquet(path, index=False)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch
    from tl.core import BackboneSpec
    from tl.core.config import resolve_config
    from tl_recsys.dataset import popularity_baseline
    from tl_recsys.plugin import RecsysPlugin
    from torch.utils.data import DataLoader

    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--interactions", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=4_000)
    parser.add_argument("--full", action="store_true", help="100k items, 1M interactions")
    parser.add_argument("--max-rss-mb", type=float, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--eval-users", type=int, default=0, help="0: all users")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args(argv)
    if args.full:
        args.items, args.interactions, args.users = 100_000, 1_000_000, 20_000
    if args.threads:
        torch.set_num_threads(args.threads)

    plugin = RecsysPlugin()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log.parquet"
        t0 = time.time()
        synthetic_log(log, args.items, args.interactions, args.users)
        print(f"generated {args.interactions:,} interactions in {time.time() - t0:.1f}s")
        t0 = time.time()
        options = resolve_config(plugin, {"data": str(log)})
        data = plugin.load(log, options)
        load_s = time.time() - t0
    print(f"load + split: {load_s:.1f}s  ({data.info['users']:,} users, "
          f"{data.info['items']:,} items, {len(data.train):,} training windows)")  # fmt: skip

    torch.manual_seed(0)
    model = plugin.build_model(BackboneSpec("sasrec"), data, options)
    print(
        f"model: {sum(p.numel() for p in model.parameters()):,} parameters, loss={model.loss_kind}"
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    t0 = time.time()
    loader = DataLoader(data.train, args.batch_size, shuffle=True, collate_fn=data.collate)
    for batch in loader:
        loss = plugin.training_step(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    epoch_s = time.time() - t0
    print(f"one epoch: {epoch_s:.1f}s (last loss {loss.item():.3f})")

    model.eval()
    val = data.val
    if args.eval_users:
        val = torch.utils.data.Subset(val, range(min(args.eval_users, len(val))))
    t0 = time.time()
    outputs = [plugin.predict_step(model, b) for b in DataLoader(val, 256, collate_fn=data.collate)]
    metrics = plugin.metrics(outputs, data, "val")
    eval_s = time.time() - t0
    print(f"evaluation (full ranking over {data.n_items:,} items, {len(val):,} users): "
          f"{eval_s:.1f}s  ndcg@10={metrics['ndcg@10']:.4f} "
          f"popularity={popularity_baseline(data, 'val')['ndcg@10']:.4f}")  # fmt: skip
    print(f"RESULT seconds_per_epoch={epoch_s:.1f} eval_seconds={eval_s:.1f} "
          f"load_seconds={load_s:.1f} peak_rss_mb={peak_rss_mb():.0f}")  # fmt: skip
    rss = peak_rss_mb()
    return result(
        "recsys_scale", rss, args.max_rss_mb, rss / args.max_rss_mb, "<= 1 (RSS/budget)",
        rss <= args.max_rss_mb, unit="MB", items=args.items, interactions=args.interactions,
        seconds_per_epoch=round(epoch_s, 2), eval_seconds=round(eval_s, 2),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
