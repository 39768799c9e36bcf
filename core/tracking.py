"""Experiment tracking: ``--track mlflow`` on `tl run`, `tl pretrain`, `tl distill`, `tl tune`.

One MLflow run per tl run directory: the resolved config as params (what config.yaml holds,
so an ``--lr find`` run records the chosen LR), every epoch's history row as metrics with
``step`` = epoch, the final metrics of metrics.json, the files a reader wants (model.onnx,
report.md, plots, metrics.json, config.yaml, history.csv) as artifacts, and tags (plugin,
backbone, strategy, git SHA). The tracking URI is MLflow's own choice: ``MLFLOW_TRACKING_URI``,
else MLflow's default; the experiment ``MLFLOW_EXPERIMENT_NAME`` / ``_ID``, else "Default".
`tl tune` opens a parent run per study (`study_run`); its trials are nested runs.

MLflow is an optional extra (``pip install "tl[mlflow]"``), imported only when asked for.
TensorBoard (``RUN/tb``) is written either way.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from .errors import ConfigError, Interrupted
from .progress import ProgressReporter

#: the MLflow run id new runs nest under (set by `study_run` while `tl tune` runs)
_PARENT: ContextVar[str | None] = ContextVar("tl_mlflow_parent", default=None)
ARTIFACTS = ("model.onnx", "report.md", "metrics.json", "config.yaml", "history.csv",
             "pretrain.json", "lr_find.json", "trials.csv", "best_config.yaml")  # fmt: skip
_BAD_NAME = re.compile(r"[^/\w.\- :]")


def require_mlflow(load: bool = True) -> Any:
    """The ``mlflow`` module (``load=False``: only check that it is there), or a one-line
    error saying how to install it."""
    import importlib.util

    missing = ConfigError(
        "--track mlflow needs MLflow, which is not installed",
        "--track mlflow",
        'pip install "tl[mlflow]"',
    )
    try:
        if importlib.util.find_spec("mlflow") is None:
            raise missing
    except (ImportError, ValueError):
        raise missing from None
    if not load:
        return None
    try:
        import mlflow
    except ImportError:
        raise missing from None
    return mlflow


def metric_name(key: str) -> str:
    """A tl metric name as MLflow accepts it (``ndcg@10`` → ``ndcg_at_10``)."""
    return _BAD_NAME.sub("_", str(key).replace("@", "_at_"))


def flat_metrics(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a (nested) metrics mapping, keys joined with ``.``."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_metrics(value, f"{name}."))
        elif is_number(value) and math.isfinite(float(value)):
            out[metric_name(name)] = float(value)
    return out


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class MlflowEpochs:
    """A `tl.core.Callback`: every epoch's history row as MLflow metrics at ``step`` = epoch;
    the params (the run directory's config.yaml) when training starts."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def on_fit_start(self, trainer: Any, state: Any) -> None:
        self.tracker.log_params()

    def on_validation_end(self, trainer: Any, state: Any) -> None:
        row = {k: v for k, v in state.row.items() if k != "epoch"}
        self.tracker.log_metrics(flat_metrics(row), step=int(state.row["epoch"]))


class Tracker:
    """One MLflow run, logged through the client API (no global active run is touched)."""

    def __init__(self, client: Any, run_id: str, run_dir: Path, params_logged: bool = False):
        self.client, self.run_id, self.run_dir = client, run_id, Path(run_dir)
        self.params_logged = params_logged

    @classmethod
    def create(cls, mlflow: Any, run_dir: Path, tags: dict[str, str], name: str) -> Tracker:
        """A new run in the experiment of `experiment_id`, nested under `_PARENT` if set."""
        from mlflow.exceptions import MlflowException

        client = mlflow.MlflowClient()
        parent = _PARENT.get()
        if parent:
            tags = {**tags, "mlflow.parentRunId": parent}
        try:
            run = client.create_run(experiment_id(client), tags=tags, run_name=name)
        except MlflowException as exc:
            raise ConfigError(
                f"MLflow refused the run: {str(exc).splitlines()[0][:200]}",
                mlflow.get_tracking_uri(),
                "check MLFLOW_TRACKING_URI / MLFLOW_EXPERIMENT_NAME",
            ) from exc
        return cls(client, run.info.run_id, run_dir)

    def log_params(self, values: Mapping[str, Any] | None = None) -> None:
        """``values`` (default: config.yaml's), once: MLflow params cannot change."""
        if self.params_logged:
            return
        from mlflow.entities import Param

        from .rundir import read_config

        if values is None:
            path = self.run_dir / "config.yaml"
            if not path.exists():
                return
            values = read_config(path)
        params = [Param(str(k), _param_value(v)) for k, v in sorted(values.items())]
        for start in range(0, len(params), 100):  # MLflow takes 100 params per batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])
        self.params_logged = True

    def log_metrics(self, values: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in values.items()]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def finish(self, status: str, tl_status: str) -> None:
        """Params if not yet, final metrics and artifacts, then the run's end state."""
        try:
            self.log_params()
            metrics = _read_json(self.run_dir / "metrics.json")
            if metrics:
                self.log_metrics(flat_metrics(metrics))
            self.client.set_tag(self.run_id, "tl.status", tl_status)
            for path in artifact_files(self.run_dir):
                self.client.log_artifact(self.run_id, str(path))
        finally:
            self.client.set_terminated(self.run_id, status)


def artifact_files(run_dir: Path) -> list[Path]:
    """The files of a run directory worth keeping in the tracker."""
    run_dir = Path(run_dir)
    files = [run_dir / name for name in ARTIFACTS]
    return [p for p in files + sorted(run_dir.glob("*.png")) if p.is_file()]


def experiment_id(client: Any) -> str:
    """``MLFLOW_EXPERIMENT_ID``, else ``MLFLOW_EXPERIMENT_NAME`` (made if new), else "0"."""
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if not name:
        return "0"
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:6000]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _end_state(exc: BaseException | None) -> tuple[str, str]:
    """(MLflow status, tl status) of a run that ended with ``exc`` (None: complete)."""
    if exc is None:
        return "FINISHED", "complete"
    own = getattr(exc, "tl_status", None)  # e.g. a pruned tune trial
    if own:
        return "KILLED", str(own)
    if isinstance(exc, (Interrupted, KeyboardInterrupt)):
        return "KILLED", "interrupted"
    return "FAILED", "failed"


def run_tags(plugin: Any, config: Mapping[str, Any], run_dir: Path, kind: str) -> dict[str, str]:
    manifest = _read_json(Path(run_dir) / "manifest.json")
    tags = {
        "plugin": plugin.name,
        "backbone": str(config.get("backbone")),
        "strategy": str(config.get("strategy")),
        "tl.kind": kind,
        "tl.run_dir": str(Path(run_dir).resolve()),
    }
    if manifest.get("git_sha"):
        tags["git_sha"] = tags["mlflow.source.git.commit"] = str(manifest["git_sha"])
    return tags


@contextmanager
def track_run(
    plugin: Any,
    config: Mapping[str, Any],
    run_dir: Path,
    reporter: ProgressReporter | None = None,
    kind: str = "run",
) -> Iterator[list[Any]]:
    """The callbacks that track this run (none unless ``config["track"]`` is mlflow); on
    exit the final metrics and artifacts are logged and the MLflow run ends FINISHED,
    FAILED or KILLED (interrupted; a pruned trial, tagged ``tl.status``)."""
    if config.get("track", "none") != "mlflow":
        yield []
        return
    mlflow = require_mlflow()
    tags = run_tags(plugin, config, run_dir, kind)
    tracker = Tracker.create(mlflow, run_dir, tags, Path(run_dir).name)
    if reporter is not None:
        reporter.log(f"tracking in MLflow ({mlflow.get_tracking_uri()}), run {tracker.run_id}")
    error: BaseException | None = None
    try:
        yield [MlflowEpochs(tracker)]
    except BaseException as exc:
        error = exc
        raise
    finally:
        _finish(tracker, error, reporter)


def _finish(tracker: Tracker, error: BaseException | None, reporter: Any) -> None:
    """End the MLflow run; a tracking failure is one warning line, never the run's error."""
    try:
        tracker.finish(*_end_state(error))
    except Exception as exc:  # the run's own result (or error) matters more
        if reporter is not None:
            reporter.log(f"warning: MLflow logging failed: {type(exc).__name__}: {exc}"[:300])


@contextmanager
def study_run(
    study: str, out_dir: Path, tags: dict[str, str], params: Mapping[str, Any], enabled: bool
) -> Iterator[Tracker | None]:
    """`tl tune`'s parent run for ``study`` with ``params`` (the search's settings; a later
    or concurrent `tl tune` of the same study in the same experiment reuses the run); trials
    tracked meanwhile nest under it. Yields the `Tracker` (None when not ``enabled``)."""
    if not enabled:
        yield None
        return
    mlflow = require_mlflow()
    client = mlflow.MlflowClient()
    found = client.search_runs(
        [experiment_id(client)],
        filter_string=f"tags.`tl.study` = '{study}' and tags.`tl.kind` = 'tune'",
        max_results=1,
    )
    if found:
        tracker = Tracker(client, found[0].info.run_id, out_dir, params_logged=True)
        client.update_run(tracker.run_id, status="RUNNING")
    else:
        tags = {**tags, "tl.study": study, "tl.kind": "tune", "tl.run_dir": str(out_dir)}
        tracker = Tracker.create(mlflow, out_dir, tags, f"tune-{study}")
        tracker.log_params(params)
    token = _PARENT.set(tracker.run_id)
    error: BaseException | None = None
    try:
        yield tracker
    except BaseException as exc:
        error = exc
        raise
    finally:
        _PARENT.reset(token)
        _finish(tracker, error, None)


__all__ = [
    "MlflowEpochs",
    "Tracker",
    "artifact_files",
    "flat_metrics",
    "metric_name",
    "require_mlflow",
    "study_run",
    "track_run",
]
