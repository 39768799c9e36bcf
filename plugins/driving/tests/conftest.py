"""Shared fixtures: a tiny generated scene set, and single-threaded torch for speed.

Two cores are shared by several test suites; torch's intra-op threads then mostly wait on
each other, so the training tests pin one thread (and restore the setting afterwards).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tl_driving.demo import SIZES, write_demo

TINY = {"day": 80, "night": 36, "width": 192, "height": 112}


@pytest.fixture(scope="session")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    SIZES.setdefault("test", TINY)
    return write_demo(tmp_path_factory.mktemp("scenes"), "test", seed=0)


@pytest.fixture
def one_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
