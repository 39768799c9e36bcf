"""Helpers of the contract suite (in-process `tl`, error lines, the trained-run record)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from specs import SPECS, PluginSpec  # noqa: E402


def installed() -> list[str]:
    from tl.core.registry import _entry_points

    return ["toy", *sorted(n for n in _entry_points() if n in SPECS)]


def tl(*argv: str) -> tuple[int, str, str]:
    from cli_inprocess import invoke

    return invoke(*[str(a) for a in argv])


def last_line(stdout: str) -> str:
    return stdout.strip().splitlines()[-1]


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


@dataclass
class Trained:
    """A finished tiny run of one plugin: where its data and run directory are."""

    name: str
    spec: PluginSpec
    data: Path
    args: list[str]
    run_dir: Path
    root: Path

    @property
    def metrics(self) -> dict:
        return json.loads((self.run_dir / "metrics.json").read_text())
