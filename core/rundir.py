"""Run directories (`runs/<prefix>-<YYYYmmdd-HHMMSS>`, never overwritten) and their files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .fileio import file_sha256, write_json_atomic, write_text_atomic


def make_run_dir(out: Path, prefix: str) -> Path:
    """Create a fresh run directory; concurrent runs in the same second get ``-2``, ``-3`` …"""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError("cannot create the output folder", out, "pick a writable --out") from exc
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        name = f"{prefix}-{stamp}" + (f"-{attempt}" if attempt > 1 else "")
        try:
            (out / name).mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(
                "cannot create the run directory", out / name, "pick a writable --out"
            ) from exc
        return out / name
    raise ConfigError("too many runs in one second", out, "use another --out")


def write_config(run_dir: Path, plugin: Any, config: Any) -> None:
    """config.yaml: the plugin and every resolved option, so that
    ``tl run PLUGIN --config RUN/config.yaml`` reproduces the run."""
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    text = yaml.safe_dump(_plain({"plugin": plugin.name, **values}), sort_keys=True,
                          allow_unicode=True)  # fmt: skip
    write_text_atomic(run_dir / "config.yaml", text)


@contextmanager
def run_status(run_dir: Path, plugin: Any, config: Any) -> Iterator[None]:
    """``status`` in manifest.json: ``running`` while the body runs, then ``complete``, or
    ``failed`` (with the error line) / ``interrupted`` (resumable) when it raises."""
    update_manifest(run_dir, plugin, config, {"status": "running", "error": None})
    try:
        yield
    except BaseException as exc:
        from .errors import Interrupted

        interrupted = isinstance(exc, (Interrupted, KeyboardInterrupt))
        line = getattr(exc, "what", None) or f"{type(exc).__name__}: {exc}"
        with suppress(OSError):  # a full disk must not hide the original error
            update_manifest(run_dir, plugin, config, {
                "status": "interrupted" if interrupted else "failed",
                "error": str(line).splitlines()[0][:500] if str(line) else type(exc).__name__,
            })  # fmt: skip
        raise
    update_manifest(run_dir, plugin, config, {"status": "complete"})


def remove_stale_temp_files(run_dir: Path) -> int:
    """Delete the temp files a killed process left mid-write (``.NAME.*.tmp``, see
    `tl.core.fileio.atomic_path`); the files they were to replace are intact."""
    stale = [p for p in Path(run_dir).rglob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def read_manifest(run_dir: Path) -> dict[str, Any]:
    try:
        loaded = json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def update_manifest(run_dir: Path, plugin: Any, config: Any, extra: dict[str, Any]) -> None:
    """manifest.json with ``extra`` merged into what it holds already."""
    manifest = read_manifest(run_dir)
    if not manifest:
        manifest = _base_manifest(plugin, config)
    manifest.update(extra)
    write_json_atomic(Path(run_dir) / "manifest.json", manifest)


def read_config(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("config file not found", path, "check the path") from exc
    except IsADirectoryError as exc:
        raise ConfigError("the config path is a folder", path, "pass a YAML file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("config file is not UTF-8 text", path, "pass a YAML file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file is not valid YAML: {str(exc).splitlines()[0]}", path, "fix the YAML"
        ) from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            "config file must be a mapping of option: value", path, "use `key: value` lines"
        )
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def data_fingerprint(path: Path, max_listed: int = 2000) -> dict[str, Any]:
    """sha256 of every data file (listed when few) and one combined hash."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    import hashlib

    combined = hashlib.sha256()
    listed = {}
    for file in files:
        digest = file_sha256(file)
        rel = file.name if file == path else str(file.relative_to(path))
        combined.update(f"{rel}\0{digest}\n".encode())
        if len(files) <= max_listed:
            listed[rel] = digest
    return {
        "path": str(path),
        "files": len(files),
        "sha256": combined.hexdigest(),
        "file_hashes": listed,
    }


def write_manifest(run_dir: Path, plugin: Any, options: Any, extra: dict[str, Any]) -> None:
    """manifest.json: versions, git SHA, seed, command line, data hashes (``extra``); a
    ``status`` already recorded by `run_status` is kept."""
    status = {k: v for k, v in read_manifest(run_dir).items() if k in ("status", "error")}
    write_json_atomic(run_dir / "manifest.json", {**_base_manifest(plugin, options), **status,
                                                  **extra})  # fmt: skip


def _base_manifest(plugin: Any, options: Any) -> dict[str, Any]:
    dist_versions = {
        name: _version(name)
        for name in (
            "tl",
            f"tl-{plugin.name}",
            "torch",
            "torchvision",
            "timm",
            "onnx",
            "onnxruntime-gpu",
            "onnxruntime",
            "numpy",
            "scikit-learn",
        )
    }
    manifest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "plugin": plugin.name,
        "versions": {k: v for k, v in dist_versions.items() if v},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_sha": _git_sha(),
        "seed": options.get("seed"),
        "command": os.environ.get("TL_COMMAND_LINE"),
    }
    return manifest
