"""Test-suite wide: how `pytest -n 2 --dist loadgroup` (pyproject's addopts) shares work.

Trained runs are shared through session- and module-scoped fixtures; a worker builds a
fixture for itself, so tests that share one must run on the same worker. Each contract-suite
test, each plugin's tests and each other test module form one group.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT / "tests"))  # shared helpers (cli_inprocess) for plugin tests too
if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _group(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    if parts[:2] == ("tests", "contract"):
        return "contract"
    if parts[0] == "plugins" and len(parts) > 1:
        return f"plugin-{parts[1]}"
    return "/".join(parts)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            group = _group(Path(str(item.path)))
        except ValueError:  # a test outside the repository
            continue
        item.add_marker(pytest.mark.xdist_group(group))
