"""The contract suite's fixtures: one tiny `--compare-scratch` run per plugin per session.

Every installed plugin takes part (and the toy plugin, which stands for "a plugin written
against the documented protocol"); each trains on its own generated demo data at the
smallest size it accepts, once, and every contract test reads that run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from contract_harness import Trained, installed, last_line, tl  # noqa: E402
from specs import SPECS  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def toy_registered():
    """`tl … toy` finds the toy plugin as if it were installed."""
    import tl.core.registry as registry
    from toy_plugin import ToyPlugin

    real = registry.load_plugin
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "load_plugin", lambda n: ToyPlugin() if n == "toy" else real(n))
        yield


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on 2 shared cores: intra-op threads only wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained_runs() -> dict[str, Trained]:
    """Every trained run of this worker, by plugin: pytest tears a parametrized fixture down
    whenever the next test wants another parameter, and this keeps the runs for the session."""
    return {}


@pytest.fixture(scope="session", params=installed())
def trained(request, trained_runs, tmp_path_factory, toy_registered) -> Trained:
    name = request.param
    if name not in trained_runs:
        trained_runs[name] = _trained(name, tmp_path_factory)
    return trained_runs[name]


def _trained(name: str, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    import torch

    spec = SPECS[name]
    root = tmp_path_factory.mktemp(f"contract-{name}")
    data, args = spec.make(root / "data")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # restored below: later tests compare against subprocesses
    try:
        return _train(name, spec, root, data, args)
    finally:
        torch.set_num_threads(threads)


def _train(name: str, spec, root: Path, data: Path, args: list[str]) -> Trained:
    # the source of the transfer: a run of its own, so that the main model and the scratch
    # model differ (with --weights none they would be the same model)
    code, stdout, stderr = tl("run", name, "--data", data, *args, *spec.common, "--seed", "1",
                              "--epochs", "1", "--out", root / "source")  # fmt: skip
    assert code == 0, stderr[-3000:]
    source = last_line(stdout)
    code, stdout, stderr = tl("run", name, "--data", data, *args, *spec.common, "--weights",
                              source, "--compare-scratch", "--out", root / "runs")  # fmt: skip
    assert code == 0, stderr[-3000:]
    return Trained(name, spec, Path(data), args, Path(last_line(stdout)), root)
