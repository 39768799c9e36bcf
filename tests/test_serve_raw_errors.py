"""The raw endpoint's errors speak to an HTTP client: no CLI flags it cannot pass."""

from __future__ import annotations

import pytest
from tl.core.serving.raw import PredictOptions, _fix_for_a_client


@pytest.fixture(scope="module")
def recsys_options() -> PredictOptions:
    pytest.importorskip("tl_recsys")
    from tl.core.registry import load_plugin

    return PredictOptions(load_plugin("recsys"))


@pytest.mark.parametrize(
    "fix, said",
    [
        ("re-export the file, remove it, or pass --skip-bad to skip unreadable files",
         "re-export the file, remove it"),
        ("replace the file or use --skip-bad", "replace the file"),
        ("fix or remove the file (or its manifest row), or pass --skip-bad to leave it out",
         "fix or remove the file (or its manifest row)"),
        ("use --skip-bad", "fix the upload and send it again"),
        ("pass --item-column NAME", "pass ?item_column=NAME"),  # a predict option: a parameter
        ("score a table with the same columns", "score a table with the same columns"),
    ],
)  # fmt: skip
def test_a_fix_is_said_for_the_endpoint(recsys_options, fix, said):
    assert _fix_for_a_client(fix, recsys_options) == said
