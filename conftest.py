"""Test-suite wide: how `pytest -n 2 --dist loadgroup` (pyproject's addopts) shares work.

Trained runs are shared through session- and module-scoped fixtures; a worker builds a
fixture for itself, so tests that share one must run on the same worker. Each contract-suite
test, each plugin's tests and each other test module form one group, unless a test names its
own (``pytest.mark.xdist_group``: long tests that share nothing). xdist hands groups out in
collection order, so the longest go first: a long group started last leaves the other worker
idle at the end.
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


# the longest groups, longest first (`pytest --durations`); the others keep their order after
LONGEST_FIRST = ("contract", "plugin-medical", "reliability-driving", "plugin-driving",
                 "tests/fuzz/test_fuzz_cli.py", "reliability-medical")  # fmt: skip


def _group(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    if parts[:2] == ("tests", "contract"):
        return "contract"
    if parts[0] == "plugins" and len(parts) > 1:
        return f"plugin-{parts[1]}"
    return "/".join(parts)


@pytest.hookimpl(tryfirst=True)  # xdist turns the marks into node-id suffixes in its own hook
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    groups = {}
    for item in items:
        named = item.get_closest_marker("xdist_group")
        if named is not None:
            groups[item] = str(named.args[0])
            continue
        try:
            groups[item] = _group(Path(str(item.path)))
        except ValueError:  # a test outside the repository
            continue
        item.add_marker(pytest.mark.xdist_group(groups[item]))
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(groups.get(item, ""), len(rank)))
