"""Shared fixtures: one small generated demo per session and a minimal training loop."""

from __future__ import annotations

from pathlib import Path

import pytest
from tl_recsys.plugin import RecsysPlugin

TINY = {"d_model": 32, "layers": 1, "heads": 1, "max_len": 20}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on a shared 2-core box: intra-op threads only spin against each other
    (measured 35x slower with 2 threads under load). Restored after each test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def plugin() -> RecsysPlugin:
    return RecsysPlugin()


def recsys_config(data: str | Path = "log.csv", **values):
    """Resolved `tl run recsys` options (``tl.core.Config``) as the core makes them."""
    from tl.core.config import resolve_config

    return resolve_config(RecsysPlugin(), {"data": str(data), **values})


@pytest.fixture(scope="session")
def config():
    return recsys_config


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return RecsysPlugin().demo(tmp_path_factory.mktemp("recsys_demo"), "small", seed=0)


def fit(plugin, model, data, epochs: int, lr: float = 3e-3, batch_size: int = 64) -> dict:
    """Adam on the plugin's training_step, best epoch by validation NDCG@10, test metrics."""
    import torch
    from torch.utils.data import DataLoader

    optimizer = torch.optim.Adam(model.parameters(), lr)
    best, best_state = -1.0, None
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        for batch in DataLoader(data.train, batch_size, shuffle=True, collate_fn=data.collate,
                                generator=generator):  # fmt: skip
            loss = plugin.training_step(model, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        score = evaluate(plugin, model, data, "val")["ndcg@10"]
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return evaluate(plugin, model, data, "test")


def evaluate(plugin, model, data, split: str) -> dict:
    from torch.utils.data import DataLoader

    model.eval()
    loader = DataLoader(getattr(data, split), 256, collate_fn=data.collate)
    return plugin.metrics([plugin.predict_step(model, b) for b in loader], data, split)


@pytest.fixture(scope="session")
def fit_model():
    return fit


@pytest.fixture(scope="session")
def evaluate_model():
    return evaluate
