"""`tl tune` on a tiny medical dataset: one study, trained once per session and shared.

The study gets four trials whose parameters are queued first (Optuna's ``enqueue_trial``, as
a user would seed a search), so that each outcome is certain: a good trial completes, one
asks for dropout 1.2 (inside the space, invalid for the option: it fails and the study goes
on), two train at lr 0.3 / 0.2 and are pruned after their first epoch. The study is tracked in
MLflow (SQLite). Then two `tl tune` processes add one trial each to the same journal at the
same time, one of them with ``--lr find``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from cli_inprocess import invoke

ARGS = ["--backbone", "resnet10t", "--image-size", "32", "--batch-size", "8", "--weights", "none",
        "--no-augment", "--epochs", "2", "--device", "cpu", "--seed", "0", "--patience", "0",
        "--val-fraction", "0.25"]  # fmt: skip
SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 0.5, "log": True},
    "weight_decay": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 1.5},  # above 1: invalid for --dropout
}
QUEUED = [
    {"lr": 3e-3, "weight_decay": 1e-3, "dropout": 0.0},
    {"lr": 3e-3, "weight_decay": 1e-3, "dropout": 1.2},  # fails: dropout must be < 1
    {"lr": 0.3, "weight_decay": 1e-3, "dropout": 0.0},  # diverges: pruned after epoch 1
    {"lr": 0.2, "weight_decay": 1e-2, "dropout": 0.1},  # likewise
]
STATES = ["COMPLETE", "FAIL", "PRUNED", "PRUNED"]
STUDY = "demo"


class Study:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "scans"
        self.out = root / "runs"
        self.dir = self.out / f"tune-{STUDY}"
        self.space = root / "space.yaml"
        self.tracking_uri = f"sqlite:///{root / 'mlflow.db'}"

    def args(self) -> list[str]:
        return ["--data", str(self.data), *ARGS, "--out", str(self.out), "--study", STUDY,
                "--space", str(self.space), "--metric", "loss", "--startup-trials", "1"]  # fmt: skip

    def trials(self) -> list:
        import optuna
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        storage = JournalStorage(JournalFileBackend(str(self.dir / "journal.log")))
        return optuna.load_study(study_name=STUDY, storage=storage).get_trials()


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Study:
    import mlflow
    import optuna
    import torch
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from tl_medical.demo import write_dataset

    s = Study(tmp_path_factory.mktemp("tune"))
    write_dataset(s.data, {"normal": 20, "nodule": 20}, seed=3, image_size=48)
    s.space.write_text(yaml.safe_dump(SPACE))
    mlflow.MlflowClient(s.tracking_uri).create_experiment(
        "tl-tests", artifact_location=(s.root / "mlartifacts").as_uri()
    )
    s.dir.mkdir(parents=True)
    storage = JournalStorage(JournalFileBackend(str(s.dir / "journal.log")))
    queued = optuna.create_study(storage=storage, study_name=STUDY, direction="minimize")
    for params in QUEUED:
        queued.enqueue_trial(params)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_URI", s.tracking_uri)
            patch.setenv("MLFLOW_EXPERIMENT_NAME", "tl-tests")
            code, stdout, stderr = invoke("tune", "medical", *s.args(), "--trials", "4",
                                          "--sampler-seed", "0", "--track", "mlflow")  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert code == 0, stderr[-3000:]
    assert stdout.strip().splitlines()[-1] == str(s.dir)
    return s


@pytest.fixture(scope="module")
def rerun(study: Study) -> Study:
    """Two `tl tune` processes on the study's journal at once, one trial each (not pruned:
    each process picks its own pruner)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "tl.cli.main", "tune", "medical", *study.args(),
               "--trials", "1", "--track", "none", "--pruner", "none", "--epochs", "1"]  # fmt: skip
    extras = (["--dropout", "0.0", "--lr", "3e-3"], ["--dropout", "0.1", "--lr", "find"])
    procs = [subprocess.Popen(command + extra, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for extra in extras]  # fmt: skip
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
    return study


def _run_dir(trial) -> Path:
    return Path(trial.user_attrs["run_dir"])


def test_queued_trials_complete_fail_and_prune(study):
    trials = study.trials()[:4]
    assert [t.state.name for t in trials] == STATES
    assert "bad value for dropout" in trials[1].user_attrs["error"]
    assert "run_dir" not in trials[1].user_attrs  # failed before any run directory was made
    frame = pd.read_csv(study.dir / "trials.csv")
    assert frame["state"].tolist()[:4] == [s.lower() for s in STATES]
    for trial in trials[:1]:
        run = _run_dir(trial)
        assert json.loads((run / "manifest.json").read_text())["status"] == "complete"
        history = pd.read_csv(run / "history.csv")
        best = json.loads((run / "metrics.json").read_text())["best_epoch"]
        assert trial.value == pytest.approx(history["val_loss"][best - 1])
        test_loss = json.loads((run / "metrics.json").read_text()).get("loss")  # none: medical
        assert trial.user_attrs.get("test_value") == test_loss


@pytest.mark.parametrize("number", [2, 3])
def test_a_pruned_trial_keeps_a_consistent_run_directory(study, number):
    pruned = study.trials()[number]
    run = _run_dir(pruned)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "pruned" and manifest["pruned"]["epoch"] == 1
    assert len(pd.read_csv(run / "history.csv")) == 1
    assert (run / "checkpoints" / "last.safetensors").exists()
    assert not (run / "model.onnx").exists()
    completed = study.trials()[0].intermediate_values[1]
    assert pruned.intermediate_values[1] > completed  # worse than the median at epoch 1
    code, _, stderr = invoke("predict", str(run), "--data", str(study.data))
    assert code == 2 and stderr.strip().startswith("error:")


def test_best_is_the_best_trial_and_its_model_predicts(study):
    trials = [t for t in study.trials()[:4] if t.state.name == "COMPLETE"]
    best = min(trials, key=lambda t: t.value)
    assert (study.dir / "best").resolve() == _run_dir(best).resolve()
    out = study.root / "predictions.csv"
    code, _, stderr = invoke("predict", str(study.dir / "best"), "--data", str(study.data),
                             "--out", str(out))  # fmt: skip
    assert code == 0, stderr[-2000:]
    expected = pd.read_csv(study.dir / "best" / "test_predictions.csv")
    joined = expected.merge(pd.read_csv(out), on="item", suffixes=("", "_predict"))
    assert len(joined) == len(expected) > 0
    for column in [c for c in expected.columns if c.startswith("p_")]:
        assert (joined[column] - joined[f"{column}_predict"]).abs().max() <= 1e-5


def test_best_config_reproduces_the_best_trial(study):
    from tl.core.registry import load_plugin
    from tl.core.run_config import resolve_run_config

    best = min((t for t in study.trials()[:4] if t.state.name == "COMPLETE"), key=lambda t: t.value)
    config = resolve_run_config(load_plugin("medical"), {"config": study.dir / "best_config.yaml"})
    for name, value in best.params.items():
        assert config[name] == pytest.approx(value)
    trial_config = yaml.safe_load((_run_dir(best) / "config.yaml").read_text())
    assert {k: config[k] for k in trial_config if k != "plugin"} == {
        k: v for k, v in trial_config.items() if k != "plugin"
    }
    report = (study.dir / "report.md").read_text()
    assert f"tl run medical --config {study.dir / 'best_config.yaml'}" in report
    assert (
        "(optimization_history.png)" in report and (study.dir / "optimization_history.png").exists()
    )
    assert "## Parameter importance" in report


def test_trials_are_tracked_in_mlflow_under_the_study(study):
    import mlflow

    client = mlflow.MlflowClient(study.tracking_uri)
    experiment = client.get_experiment_by_name("tl-tests").experiment_id
    runs = client.search_runs([experiment])
    (parent,) = [r for r in runs if r.data.tags.get("tl.kind") == "tune"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    by_dir = {Path(r.data.tags["tl.run_dir"]): r for r in children}
    trials = study.trials()[:4]
    assert set(by_dir) == {_run_dir(t).resolve() for t in (trials[0], trials[2], trials[3])}
    done = by_dir[_run_dir(trials[0]).resolve()]
    assert done.info.status == "FINISHED"
    assert float(done.data.params["lr"]) == pytest.approx(trials[0].params["lr"])
    assert done.data.params["backbone"] == "resnet10t" and done.data.tags["plugin"] == "medical"
    history = client.get_metric_history(done.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == [1, 2]
    csv = pd.read_csv(_run_dir(trials[0]) / "history.csv")
    assert sorted(m.value for m in history) == pytest.approx(sorted(csv["val_loss"]))
    artifacts = {a.path for a in client.list_artifacts(done.info.run_id)}
    assert {"model.onnx", "report.md", "metrics.json", "training_curves.png"} <= artifacts
    pruned = by_dir[_run_dir(trials[3]).resolve()]
    assert pruned.info.status == "KILLED" and pruned.data.tags["tl.status"] == "pruned"
    assert parent.data.metrics["best_val_loss"] == pytest.approx(trials[0].value)
    assert "report.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_two_processes_share_the_study_and_a_rerun_adds_trials(rerun):
    trials = rerun.trials()
    assert [t.number for t in trials] == list(range(6))
    assert [t.state.name for t in trials[4:]] == ["COMPLETE", "COMPLETE"]
    assert len({t.user_attrs.get("run_dir") for t in trials} - {None}) == 5  # 1 failed early
    assert len(set(pd.read_csv(rerun.dir / "trials.csv")["number"])) >= 5


def test_lr_find_records_the_chosen_lr_and_its_plot(rerun):
    (trial,) = [t for t in rerun.trials()[4:] if (_run_dir(t) / "lr_find.json").exists()]
    assert trial.state.name == "COMPLETE", trial.user_attrs.get("error")
    run = _run_dir(trial)
    found = json.loads((run / "lr_find.json").read_text())
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert isinstance(config["lr"], float) and config["lr"] == found["chosen"]
    assert min(found["lrs"]) <= found["chosen"] <= max(found["lrs"])
    assert pd.read_csv(run / "history.csv")["lr"].max() <= found["chosen"] * 1.0001
    report = (run / "report.md").read_text()
    assert "## Learning rate (range test)" in report and "(lr_find.png)" in report
    assert (run / "lr_find.png").stat().st_size > 1000


def test_sigterm_fails_the_running_trial_and_queues_it(study, monkeypatch):
    """SIGTERM mid-trial: exit 143, that trial FAIL (its run `interrupted`), its parameters
    queued for the next `tl tune`, the study's report written."""
    import signal

    import optuna
    from tl.core.tuning.pruning import PruningCallback

    def send_sigterm(self, trainer, state):
        os.kill(os.getpid(), signal.SIGTERM)  # the trainer stops at the next batch

    monkeypatch.setattr(PruningCallback, "on_train_epoch_end", send_sigterm, raising=False)
    valid = study.root / "valid_space.yaml"  # no invalid dropout: trial 0 must train
    valid.write_text(
        yaml.safe_dump({**SPACE, "dropout": {"type": "float", "low": 0.0, "high": 0.5}})
    )
    args = [
        "stopped" if a == STUDY else str(valid) if a == str(study.space) else a
        for a in study.args()
    ]
    code, _, stderr = invoke("tune", "medical", *args, "--trials", "3", "--track", "none")
    assert code == 143, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted by SIGTERM; trial 0")
    folder = study.out / "tune-stopped"
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / "journal.log"))
    )
    trials = optuna.load_study(study_name="stopped", storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[1].system_attrs["fixed_params"] == trials[0].params
    manifest = json.loads((_run_dir(trials[0]) / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert (folder / "report.md").exists()


@pytest.mark.parametrize(
    "space, says",
    [
        ({"lr": {"low": 1e-4, "high": 1e-2}, "dropuot": [0.1]}, "did you mean 'dropout'"),
        ({"lr": {"type": "float", "low": 0.1, "high": 0.01}}, "low 0.1 is above high 0.01"),
        (
            {"lr": {"type": "float", "low": 0, "high": 0.1, "log": True}},
            "a log range needs low > 0",
        ),
        (
            {
                "layer_decay": {"low": 0.5, "high": 0.9, "when": {"strategy": "llrd"}},
                "strategy": ["llrd", "full"],
            },
            "list strategy before layer_decay",
        ),  # fmt: skip
        ({"epochs": "many"}, "bad value for epochs"),
        ({"data": ["a", "b"]}, "'data' cannot be searched"),
        ("- just\n- a list\n", "must be a mapping"),
        ("lr: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_bad_space_file_is_one_line(tmp_path, space, says):
    path = tmp_path / "space.yaml"
    path.write_text(space if isinstance(space, str) else yaml.safe_dump(space))
    code, _, stderr = invoke("tune", "medical", "--data", str(tmp_path), "--space", str(path),
                             "--out", str(tmp_path / "runs"))  # fmt: skip
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert says in lines[0] and str(path) in lines[0]
    assert not (tmp_path / "runs").exists()


def test_the_default_run_is_a_new_studys_first_trial(tmp_path):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from tl.core.tuning.space import parse_space
    from tl_medical.demo import write_dataset
    from tl_medical.plugin import MedicalPlugin

    space = parse_space(MedicalPlugin(), {**SPACE, "strategy": ["linear", "full"],
                                          "layer_decay": {"type": "float", "low": 0.5,
                                                          "high": 0.9, "when": {"strategy": ["llrd"]}}})  # fmt: skip
    base = {"lr": 1e-3, "weight_decay": 0.05, "dropout": 0.0, "strategy": "auto",
            "layer_decay": 0.75}  # fmt: skip
    assert space.baseline(base) == {"lr": 1e-3, "weight_decay": 0.05, "dropout": 0.0}
    assert space.baseline({**base, "lr": 0.9, "strategy": "full"}) == {
        "weight_decay": 0.05, "dropout": 0.0, "strategy": "full"}  # fmt: skip

    data = tmp_path / "scans"
    write_dataset(data, {"normal": 8, "nodule": 8}, seed=4, image_size=32)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    code, _, stderr = invoke("tune", "medical", "--data", str(data), *ARGS, "--epochs", "1",
                             "--out", str(tmp_path / "runs"), "--study", "fresh", "--space",
                             str(tmp_path / "space.yaml"), "--trials", "1")  # fmt: skip
    assert code == 0, stderr[-2000:]
    journal = JournalFileBackend(str(tmp_path / "runs" / "tune-fresh" / "journal.log"))
    (first,) = optuna.load_study(study_name="fresh", storage=JournalStorage(journal)).trials
    assert first.params == {"lr": 1e-3, "weight_decay": 0.05, "dropout": 0.0}
    assert first.user_attrs["tl_default_run"] is True
