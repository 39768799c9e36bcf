"""Run directories (`runs/<prefix>-<YYYYmmdd-HHMMSS>`, never overwritten) and their files."""

from __future__ import annotations

import os
import platform
import subprocess
import time
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


def write_config(run_dir: Path, options: dict[str, Any]) -> None:
    text = yaml.safe_dump(_plain(options), sort_keys=True, allow_unicode=True)
    write_text_atomic(run_dir / "config.yaml", text)


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


def write_manifest(
    run_dir: Path, plugin: Any, options: dict[str, Any], extra: dict[str, Any]
) -> None:
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
        **extra,
    }
    write_json_atomic(run_dir / "manifest.json", manifest)
