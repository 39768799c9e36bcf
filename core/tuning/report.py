"""What a study leaves in ``OUT/tune-<study>/``: trials.csv, best/, best_config.yaml, plots
and report.md.

``best/`` is a link to the best trial's run directory (a copy where links cannot be made),
so ``best/model.onnx`` is the deliverable and ``tl predict OUT/tune-<study>/best`` works. A
trial run on another machine (an RDB storage shared by many) is listed with its host; best/
then points at the best trial of this machine's folder only if that is the study's best.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from ..fileio import atomic_path, write_json_atomic, write_text_atomic
from .space import SearchSpace
from .study import StudySettings

HISTORY_PNG, IMPORTANCE_PNG = "optimization_history.png", "param_importances.png"
_STATES = {"complete": "complete", "pruned": "pruned", "fail": "failed", "running": "running",
           "waiting": "queued"}  # fmt: skip


def trials_frame(trials: list[Any], metric: str) -> pd.DataFrame:
    """One row per trial: number, state, validation and test value, epochs, seconds, every
    parameter (``param_<name>``), host, run directory and error."""
    rows = []
    for t in trials:
        attrs = t.user_attrs
        row = {
            "number": t.number,
            "state": t.state.name.lower(),
            f"val_{metric}": t.value
            if t.values
            else _last_reported(t)
            if t.state.name == "PRUNED"
            else None,
            f"test_{metric}": attrs.get("test_value"),
            "epochs_run": attrs.get("epochs_run"),
            "seconds": attrs.get("seconds"),
        }
        row.update({f"param_{k}": v for k, v in t.params.items()})
        row.update({k: attrs.get(k) for k in ("host", "run_dir", "error")})
        rows.append(row)
    return pd.DataFrame(rows)


def _last_reported(trial: Any) -> float | None:
    """A pruned trial's last reported validation value."""
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def link_best(out_dir: Path, target: Path) -> bool:
    """``out_dir/best`` → ``target`` (atomic: a new link renamed over the old one)."""
    link = out_dir / "best"
    if not target.is_dir():
        return False
    tmp = out_dir / f".best.{os.getpid()}.tmp"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(os.path.relpath(target, out_dir), tmp, target_is_directory=True)
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        os.replace(tmp, link)
    except OSError:  # no symlinks on this file system: a copy
        copy = out_dir / f".best.{os.getpid()}.copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(target, copy, symlinks=True)
        if link.is_symlink():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link)
        os.replace(copy, link)
    return True


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path.name


def plot_history(frame: pd.DataFrame, metric: str, direction: str, path: Path) -> str:
    """Each trial's validation value (complete: dots, pruned: crosses at their last epoch,
    failed: ticks on the axis) and the best value so far."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    column = f"val_{metric}"
    done = frame[frame.state == "complete"]
    pruned = frame[(frame.state == "pruned") & frame[column].notna()]
    failed = frame[frame.state == "fail"]
    ax.scatter(done.number, done[column], color="tab:blue", label="complete", zorder=3)
    if len(pruned):
        ax.scatter(pruned.number, pruned[column], marker="x", color="tab:gray",
                   label="pruned (last epoch reached)", zorder=3)  # fmt: skip
    if len(done):
        ordered = done.sort_values("number")
        values = ordered[column].astype(float)
        best = values.cummax() if direction == "maximize" else values.cummin()
        ax.step(ordered.number, best, where="post", color="tab:red", label="best so far")
    if len(failed):
        ax.plot(failed.number, [0] * len(failed), "|", color="tab:red", markersize=14,
                transform=ax.get_xaxis_transform(), label="failed")  # fmt: skip
    shown = pd.concat([done[column], pruned[column]]).astype(float)
    if len(shown) and shown.min() > 0 and shown.max() / shown.min() > 20:
        ax.set_yscale("log")  # a diverged trial would flatten every other point
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric} (best epoch)")
    ax.set_title(f"Optimisation history ({direction} {metric})")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    return _save(fig, path)


def importances(study: Any) -> tuple[dict[str, float], str]:
    """fANOVA importance of the parameters every complete trial has, or why there is none."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        return {}, "needs at least 2 complete trials"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:
        return {}, str(exc).splitlines()[0][:200]
    return dict(found), ""


def plot_importances(found: dict[str, float], path: Path) -> str:
    plt = _pyplot()
    names = list(found)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    ax.barh(names, [found[n] for n in names], color="tab:blue", label="fANOVA importance")
    ax.set_xlabel("share of the validation metric's variance explained")
    ax.set_ylabel("parameter")
    ax.set_title("Parameter importance (complete trials)")
    ax.legend()
    return _save(fig, path)


def write_study_report(
    study: Any,
    settings: StudySettings,
    plugin: Any,
    space: SearchSpace,
    storage: str,
) -> dict[str, Any]:
    """Everything in ``settings.out_dir``; returns the summary (also study.json)."""
    out, metric = settings.out_dir, settings.metric
    trials = study.get_trials(deepcopy=False)
    frame = trials_frame(trials, metric)
    write_text_atomic(out / "trials.csv", frame.to_csv(index=False))
    counts = frame.state.value_counts().to_dict() if len(frame) else {}
    summary: dict[str, Any] = {
        "study": settings.name,
        "plugin": plugin.name,
        "metric": metric,
        "direction": settings.direction,
        "storage": storage,
        "trials": len(trials),
        **{f"n_{state}": int(n) for state, n in counts.items()},
    }
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    best = study.best_trial if complete else None
    config_text = ""
    if best is not None:
        run_dir = Path(best.user_attrs.get("run_dir", ""))
        summary.update({
            "best_trial": best.number,
            f"best_val_{metric}": best.value,
            f"best_test_{metric}": best.user_attrs.get("test_value"),
            "best_params": best.params,
            "best_run_dir": str(run_dir),
            "best_host": best.user_attrs.get("host"),
        })  # fmt: skip
        if link_best(out, run_dir) and (run_dir / "config.yaml").exists():
            config_text = (run_dir / "config.yaml").read_text(encoding="utf-8")
            head = (f"# best trial {best.number} of study {settings.name}: val {metric} "
                    f"{best.value:.4f}\n# tl run {plugin.name} --config {out / 'best_config.yaml'}\n")  # fmt: skip
            write_text_atomic(out / "best_config.yaml", head + config_text)
    images = {}
    if len(frame):
        images["history"] = plot_history(frame, metric, settings.direction, out / HISTORY_PNG)
    found, why = importances(study)
    if found:
        images["importance"] = plot_importances(found, out / IMPORTANCE_PNG)
    summary["importances"] = found
    write_json_atomic(out / "study.json", summary)
    text = _markdown(summary, settings, plugin, space, frame, images, why, config_text)
    write_text_atomic(out / "report.md", text)
    return summary


def _markdown(
    summary: dict[str, Any],
    settings: StudySettings,
    plugin: Any,
    space: SearchSpace,
    frame: pd.DataFrame,
    images: dict[str, str],
    why: str,
    config_text: str,
) -> str:
    metric, out = settings.metric, settings.out_dir
    counts = ", ".join(f"{summary[f'n_{s}']} {_STATES[s]}" for s in _STATES if f"n_{s}" in summary)
    parts = [
        f"# tl tune — {plugin.name}: study `{settings.name}`",
        "",
        f"{summary['trials']} trials ({counts}); objective: {settings.direction} validation "
        f"`{metric}` at each trial's best epoch. TPE sampler (the first "
        f"{settings.startup_trials} trials at random), pruner: {settings.pruner}. "
        f"Storage: `{summary['storage']}`. Every trial is a `tl run` directory "
        f"(`trial-<n>/`); `trials.csv` lists them all.",
        "",
        "## Best trial",
        "",
    ]
    if "best_trial" in summary:
        test = summary.get(f"best_test_{metric}")
        parts += [
            f"Trial {summary['best_trial']}: validation {metric} "
            f"**{summary[f'best_val_{metric}']:.4f}**"
            + (f", test {metric} {test:.4f}" if isinstance(test, float) else "")
            + f" (`{summary['best_run_dir']}`, host {summary.get('best_host')}).",
            "",
            "| parameter | value |",
            "|---|---|",
            *[f"| {k} | {_fmt(v)} |" for k, v in summary["best_params"].items()],
            "",
        ]
        if config_text:
            parts += [
                f"`best/` links to that run: `tl predict {out / 'best'} --data NEW_DATA` uses "
                f"its model.onnx. Train the same model again with "
                f"`tl run {plugin.name} --config {out / 'best_config.yaml'}`:",
                "",
                "```yaml",
                config_text.rstrip(),
                "```",
                "",
            ]
        else:
            parts += ["That run directory is not on this machine: see its host.", ""]
    else:
        parts += ["No trial has completed yet.", ""]
    if "history" in images:
        parts += [
            "## Optimisation history",
            "",
            f"![optimisation history]({images['history']})",
            "",
        ]
    parts += ["## Parameter importance", ""]
    if "importance" in images:
        parts += [f"![parameter importance]({images['importance']})", ""]
        parts += ["fANOVA over the complete trials, for the parameters all of them have.", ""]
    else:
        parts += [f"Not computed: {why or 'no parameter varies'}.", ""]
    parts += ["## Search space", "", "```json", json.dumps(space.as_dict(), indent=2), "```", ""]
    if len(frame):
        shown = frame.drop(columns=[c for c in ("run_dir", "host") if c in frame.columns])
        parts += ["## Trials", "", _table(shown), ""]
    return "\n".join(parts)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "\\|")


def _table(frame: pd.DataFrame) -> str:
    rows = ["| " + " | ".join(map(str, frame.columns)) + " |",
            "|" + "---|" * len(frame.columns)]  # fmt: skip
    rows += [
        "| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(rows)


__all__ = ["link_best", "trials_frame", "write_study_report"]
