"""The Optuna study of `tl tune`: its name, its storage, its sampler and pruner.

Storage: by default an Optuna journal file, ``OUT/tune-<study>/journal.log`` (appends under
a lock: several processes on one machine share it); ``--storage`` takes another journal
file path or any Optuna RDB URL (``sqlite:///…``, ``postgresql://…``, ``mysql://…``) for
many machines. RDB storages get a heartbeat, so a trial whose machine died is marked failed
and retried once. A rerun with the same study name continues the study.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
PRUNERS = ("median", "hyperband", "none")
LOWER_IS_BETTER = ("loss", "ece", "error", "brier", "mae", "mse", "rmse")


@dataclass(frozen=True)
class StudySettings:
    """What `tl tune` needs to open or create its study."""

    name: str
    out_dir: Path
    storage: str | None
    metric: str
    direction: str
    pruner: str = "median"
    startup_trials: int = 5
    sampler_seed: int | None = None
    max_epochs: int = 10


def default_study_name(plugin_name: str, data: str) -> str:
    """``<plugin>-<data folder or file stem>``, e.g. ``medical-scans``."""
    stem = Path(str(data).rstrip("/\\")).stem or "data"
    return f"{plugin_name}-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "data")


def check_study_name(name: str) -> str:
    if not STUDY_NAME.match(name):
        raise ConfigError(f"bad study name {name!r}", "--study",
                          "use letters, digits, '.', '_' and '-' (it names a folder)")  # fmt: skip
    return name


def metric_direction(metric: str, plugin: Any, given: str | None) -> str:
    """``given``, else the plugin's ``monitor_mode`` for its monitor, else by the name
    (losses and errors are minimised, everything else maximised)."""
    if given:
        return given
    if metric == plugin.monitor:
        return "maximize" if plugin.monitor_mode == "max" else "minimize"
    lower = any(word in metric.lower() for word in LOWER_IS_BETTER)
    return "minimize" if lower else "maximize"


def masked(url: str) -> str:
    """A storage URL without its password (for logs and the report)."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def open_storage(settings: StudySettings) -> tuple[Any, str]:
    """(Optuna storage, how to name it in logs)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    where = settings.storage
    if where and "://" in where:
        try:
            storage = optuna.storages.RDBStorage(
                where,
                heartbeat_interval=60,
                grace_period=180,
                failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=1),
            )
        except (ImportError, ModuleNotFoundError) as exc:
            raise ConfigError(f"the database driver is missing: {exc}", masked(where),
                              "install it (e.g. pip install psycopg2-binary for postgresql)") from exc  # fmt: skip
        except Exception as exc:  # sqlalchemy's errors: bad URL, unreachable server …
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ConfigError(f"cannot open the study storage: {first}", masked(where),
                              "check --storage (an Optuna RDB URL or a journal file path)") from exc  # fmt: skip
        return storage, masked(where)
    path = Path(where).expanduser() if where else settings.out_dir / "journal.log"
    if path.is_dir():
        raise ConfigError("the storage is a folder", path, "pass a journal file path or a URL")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path))
    except OSError as exc:
        raise ConfigError("cannot create the journal file", path, "pick a writable --out") from exc
    return JournalStorage(backend), str(path)


def _sampler(settings: StudySettings, n_existing: int) -> Any:
    import optuna

    seed = None if settings.sampler_seed is None else settings.sampler_seed + n_existing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            n_startup_trials=settings.startup_trials,
            seed=seed,
            multivariate=True,
            group=True,
            constant_liar=True,
        )


def _pruner(settings: StudySettings) -> Any:
    import optuna

    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=settings.max_epochs)
    return optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials,
                                       n_warmup_steps=0)  # fmt: skip


def open_study(settings: StudySettings, plugin: Any, data: str) -> tuple[Any, str]:
    """Create the study or load it (a rerun or another process); refuses a study made for
    another plugin or metric. Returns (study, storage description)."""
    import optuna

    storage, described = open_storage(settings)
    study = optuna.create_study(
        storage=storage,
        study_name=settings.name,
        direction=settings.direction,
        load_if_exists=True,
    )
    attrs = study.user_attrs
    if not attrs.get("plugin"):
        for key, value in (("plugin", plugin.name), ("metric", settings.metric), ("data", data)):
            study.set_user_attr(key, value)
        attrs = study.user_attrs
    if attrs.get("plugin") != plugin.name:
        raise ConfigError(f"study '{settings.name}' is a {attrs.get('plugin')} study", described,
                          f"use `tl tune {attrs.get('plugin')}`, or another --study")  # fmt: skip
    if attrs.get("metric") != settings.metric:
        raise ConfigError(
            f"study '{settings.name}' optimises {attrs.get('metric')}, not {settings.metric}",
            described, f"pass --metric {attrs.get('metric')}, or start another --study")  # fmt: skip
    direction = study.direction.name.lower()
    if direction != settings.direction:
        raise ConfigError(f"study '{settings.name}' is to {direction} {settings.metric}", described,
                          f"pass --direction {direction}, or start another --study")  # fmt: skip
    study.sampler = _sampler(settings, len(study.get_trials(deepcopy=False)))
    study.pruner = _pruner(settings)
    return study, described


__all__ = [
    "PRUNERS",
    "StudySettings",
    "check_study_name",
    "default_study_name",
    "masked",
    "metric_direction",
    "open_storage",
    "open_study",
]
