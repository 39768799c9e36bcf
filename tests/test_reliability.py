"""Crashes, signals, failing writes and concurrent runs.

* every real plugin: SIGKILL (medical: and SIGTERM) mid-run, then `--resume`: the metrics of an
  uninterrupted run with the same seed (so this is also the "same seed, data and flags →
  same metrics" check, across processes);
* SIGTERM / Ctrl-C (toy plugin): one line on stderr, exit 143 / 130, checkpoint kept,
  `--resume` finishes;
* a checkpoint write that fails (ENOSPC): exit 2, one line, the last good checkpoint intact;
* two `tl run` into the same `--out` in the same second, and parallel `tl predict`.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_data import COMMON, PLUGINS

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TL_VERBOSE": "0"}
TOY_CLI = """
import sys
sys.path.insert(0, {tests!r})
import tl.core.registry as registry
from toy_plugin import ToyPlugin
real = registry.load_plugin
registry.load_plugin = lambda name: ToyPlugin() if name == "toy" else real(name)
from tl.cli.main import main
main(sys.argv[1:])
"""
EVERY_EPOCH = ["--checkpoint-every", "0"]  # the kills below land between epochs 1 and 2
TOY_ARGS = ["--weights", "none", "--batch-size", "24", "--lr", "2e-3", "--seed", "0",
            "--device", "cpu", "--patience", "0"]  # fmt: skip


def tl(*args: str, toy: bool = False, wait: bool = True):
    code = TOY_CLI.format(tests=str(Path(__file__).parent)) if toy else None
    cmd = [sys.executable, "-c", code, *args] if toy else [sys.executable, "-m", "tl.cli", *args]
    if not wait:
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
        )
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)


def one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


def wait_for_checkpoint(out: Path, epoch: int, proc: subprocess.Popen, limit: float = 300) -> Path:
    deadline = time.time() + limit
    while time.time() < deadline and proc.poll() is None:
        for found in out.glob("*/checkpoints/last.json"):
            try:
                if json.loads(found.read_text())["epoch"] >= epoch:
                    return found.parent.parent
            except (json.JSONDecodeError, OSError):
                pass
        time.sleep(0.05)
    raise AssertionError(
        f"no checkpoint of epoch {epoch}: {proc.poll()} {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"
    )


def metrics_of(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if isinstance(v, float) and "seconds" not in k}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("reliability")


def stop_after_first_checkpoint(run_args: list[str], out: Path, signum: int) -> tuple[Path, str]:
    proc = tl(*run_args, "--out", str(out), wait=False)
    run = wait_for_checkpoint(out, 1, proc)
    os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=300)
    if signum != signal.SIGKILL:
        assert proc.returncode == 128 + signum, stderr[-2000:]
        line = one_line_error(stderr)
        assert "interrupted by" in line and "--resume" in line and str(run) in line
    assert json.loads((run / "checkpoints" / "last.json").read_text())["epoch"] >= 1
    assert not (run / "metrics.json").exists()
    if signum != signal.SIGKILL:  # a SIGKILL may land mid-write: --resume sweeps its temp files
        assert not list(run.rglob(".*.tmp")), "a temp file was left behind"
    return run, stderr


# Per plugin: an uninterrupted run and a SIGKILL-ed one side by side, then the killed one
# resumed; medical is SIGTERM-ed and resumed too (the core's signal path on a real plugin; the
# toy plugin's tests below cover SIGTERM and Ctrl-C in detail). Each plugin is its own xdist
# group, so the four share the two workers.
SIGTERM_TOO = {"medical"}


@pytest.mark.parametrize(
    "plugin", [pytest.param(p, marks=pytest.mark.xdist_group(f"reliability-{p}")) for p in PLUGINS]
)
def test_sigkill_and_sigterm_then_resume_match_an_uninterrupted_run(plugin, data_root, tmp_path):
    data, args = PLUGINS[plugin](data_root / plugin)
    run_args = ["run", plugin, "--data", str(data), *args, *COMMON, "--epochs", "3", *EVERY_EPOCH]
    straight = tl(*run_args, "--out", str(tmp_path / "a"), wait=False)
    killed, _ = stop_after_first_checkpoint(run_args, tmp_path / "b", signal.SIGKILL)
    stdout, stderr = straight.communicate(timeout=600)
    assert straight.returncode == 0, stderr[-3000:]
    straight_dir = Path(stdout.strip().splitlines()[-1])
    stopped = [killed]
    if plugin in SIGTERM_TOO:
        stopped.append(stop_after_first_checkpoint(run_args, tmp_path / "c", signal.SIGTERM)[0])
    a = metrics_of(straight_dir)
    for run in stopped:
        resumed = tl("run", plugin, "--resume", str(run))
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert Path(resumed.stdout.strip().splitlines()[-1]) == run
        assert not list(run.rglob(".*.tmp")), "a temp file was left behind"
        b = metrics_of(run)
        assert a and a.keys() == b.keys()
        for key in a:
            assert b[key] == pytest.approx(a[key], abs=1e-6), (run, key)
        history = (run / "history.csv").read_text().splitlines()
        assert len(history) == len((straight_dir / "history.csv").read_text().splitlines()) == 4


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_keep_a_checkpoint_and_exit_cleanly(signum, toy_data, tmp_path):
    args = ["run", "toy", "--data", str(toy_data), *TOY_ARGS, "--epochs", "40", *EVERY_EPOCH]
    proc = tl(*args, "--out", str(tmp_path), toy=True, wait=False)
    run = wait_for_checkpoint(tmp_path, 1, proc)
    os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr[-2000:]
    line = one_line_error(stderr)
    assert "interrupted by" in line and "--resume" in line and str(run) in line
    kept = json.loads((run / "checkpoints" / "last.json").read_text())["epoch"]
    assert kept >= 1 and not (run / "metrics.json").exists()
    from safetensors import safe_open

    with safe_open(str(run / "checkpoints" / "last.safetensors"), "pt") as fh:
        assert len(list(fh.keys())) > 0
    # --resume continues from the kept epoch (fewer epochs left: the config is edited)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("epochs: 40", f"epochs: {kept + 1}"))
    resumed = tl("run", "toy", "--resume", str(run), toy=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed after epoch {kept}" in resumed.stderr
    assert (run / "metrics.json").exists()


def test_a_stop_between_paced_writes_keeps_the_newest_epoch(toy_data, tmp_path):
    """With ``--checkpoint-every`` longer than the run so far nothing is on disk yet; the stop
    writes the last complete epoch before it says which one it kept."""
    log = tmp_path / "stderr.txt"
    args = ["run", "toy", "--data", str(toy_data), *TOY_ARGS, "--epochs", "40",
            "--checkpoint-every", "3600", "--out", str(tmp_path / "runs")]  # fmt: skip
    code = TOY_CLI.format(tests=str(Path(__file__).parent))
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-c", code, *args], stderr=err, env=ENV,
                                stdout=subprocess.DEVNULL)  # fmt: skip
        deadline = time.time() + 300
        while "epoch 3/40" not in log.read_text() and proc.poll() is None:
            assert time.time() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        assert not list(tmp_path.glob("runs/*/checkpoints/*.json")), "written inside the interval"
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)
    stderr = log.read_text()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    (run,) = (tmp_path / "runs").iterdir()
    progress = json.loads((run / "checkpoints" / "last.json").read_text())
    kept = progress["epoch"]
    assert kept >= 3 and f"checkpoint of epoch {kept} kept" in one_line_error(stderr)
    assert len(progress["history"]) == kept and (run / "checkpoints" / "last.state.pt").exists()
    config = run / "config.yaml"  # fewer epochs left; the interval may change on resume
    config.write_text(config.read_text().replace("epochs: 40", f"epochs: {kept + 1}"))
    resumed = tl("run", "toy", "--resume", str(run), "--checkpoint-every", "0", toy=True)
    assert resumed.returncode == 0 and f"resumed after epoch {kept}" in resumed.stderr
    from tl.core.run_config import resolve_run_config
    from toy_plugin import ToyPlugin

    for flags, every in (({}, 3600), ({"checkpoint_every": 0.0}, 0)):
        assert resolve_run_config(ToyPlugin(), flags, run)["checkpoint_every"] == every


def test_a_full_disk_keeps_the_last_good_checkpoint(toy_data, tmp_path, monkeypatch, capsys):
    import tl.core.checkpoints as checkpoints
    import tl.core.registry as registry
    from tl.cli.main import main
    from toy_plugin import ToyPlugin

    real_save = checkpoints.save_file
    calls = {"n": 0}

    def save_file(tensors, filename, metadata=None):
        calls["n"] += 1
        if calls["n"] > 1:  # epoch 1 is written (best; last links to it), then the disk is full
            with open(filename, "wb") as fh:
                fh.write(b"\0" * 64)  # a half-written temp file …
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoints, "save_file", save_file)
    monkeypatch.setattr(registry, "load_plugin", lambda name: ToyPlugin())
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "run",
                "toy",
                "--data",
                str(toy_data),
                *TOY_ARGS,
                "--epochs",
                "3",
                *EVERY_EPOCH,
                "--out",
                str(tmp_path),
            ]
        )
    assert exit_info.value.code == 2
    line = one_line_error(capsys.readouterr().err)
    assert "No space left on device" in line and "epoch 1 is intact" in line
    (run,) = tmp_path.iterdir()
    store = checkpoints.CheckpointStore(run)
    assert store.progress("last")["epoch"] == 1
    assert not list(run.rglob(".*.tmp")), "… is removed, never renamed over the good one"
    from safetensors.torch import load_file

    assert load_file(str(run / "checkpoints" / "last.safetensors"))
    assert not (run / "model.onnx").exists()


def test_two_runs_in_the_same_second_get_their_own_directories(toy_data, tmp_path):
    args = [
        "run",
        "toy",
        "--data",
        str(toy_data),
        *TOY_ARGS,
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
    ]
    procs = [tl(*args, toy=True, wait=False) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, stderr) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, stderr[-2000:]
    dirs = {Path(stdout.strip().splitlines()[-1]) for stdout, _ in outs}
    assert len(dirs) == 2 and all((d / "metrics.json").exists() for d in dirs)


def test_many_concurrent_make_run_dir_calls_never_collide(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from tl.core.rundir import make_run_dir

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: make_run_dir(tmp_path, "x"), range(32)))
    assert len(set(made)) == 32


def test_a_full_disk_during_export_is_one_line_and_leaves_no_partial_model(
    toy_data, tmp_path, monkeypatch, capsys
):
    import tl.core.export as export
    import tl.core.registry as registry
    from tl.cli.main import main
    from toy_plugin import ToyPlugin

    def full_disk(path, metadata):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(export, "_write_metadata", full_disk)
    monkeypatch.setattr(registry, "load_plugin", lambda name: ToyPlugin())
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "toy", "--data", str(toy_data), *TOY_ARGS, "--epochs", "1",
              "--out", str(tmp_path)])  # fmt: skip
    assert exit_info.value.code == 2
    line = one_line_error(capsys.readouterr().err)
    assert "No space left on device" in line and "free disk space" in line
    (run,) = tmp_path.iterdir()
    assert (run / "checkpoints" / "best.safetensors").exists(), "the trained model is kept"
    assert not (run / "model.onnx").exists() and not list(run.glob(".*tmp*"))
