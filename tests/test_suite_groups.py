"""The suite's time budget rests on xdist keeping each group on one worker (root conftest):
a shared trained run is then built once, not once per test that a worker happens to get."""

from __future__ import annotations

import pytest


def test_loadgroup_sees_this_modules_group(request: pytest.FixtureRequest) -> None:
    if not request.config.getvalue("loadgroup"):
        pytest.skip("not run with pytest -n N --dist loadgroup")
    assert request.node.nodeid.endswith("@tests/test_suite_groups.py"), (
        f"{request.node.nodeid}: xdist did not group this test; check the pytest/pytest-xdist "
        "versions (pyproject's test extra) and the root conftest's hook"
    )
