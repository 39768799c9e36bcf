import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """CI machines are small and shared: oversubscribed threads make tiny models 10x slower."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def market_csv(tmp_path_factory) -> Path:
    from tl_fraud.demo import NEW_MARKET, generate

    path = tmp_path_factory.mktemp("fraud") / "market.csv"
    generate(NEW_MARKET, 3000, np.random.default_rng(7), "2024-07-01", 30, 0.03).to_csv(
        path, index=False
    )
    return path
