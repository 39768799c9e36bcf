"""What training needs beyond the runtime: an inference-only install (`pip install tl
tl-<plugin>`) predicts, evaluates, exports and serves without torch; the commands that
train say at once which extra to install instead of failing deep inside an import."""

from __future__ import annotations

import importlib.util
from typing import Any

from .errors import PluginError

#: the modules `tl[train]` brings (torch is imported by every training path)
TRAIN_MODULES = ("torch", "torchvision", "timm", "safetensors", "peft", "onnxscript")


def importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):  # e.g. sys.modules[name] is None
        return False


def missing_training_modules(plugin: Any) -> list[str]:
    """The training modules (core's and ``plugin.train_modules``) that cannot be imported."""
    wanted = [*TRAIN_MODULES, *getattr(plugin, "train_modules", ())]
    return [name for name in dict.fromkeys(wanted) if not importable(name)]


def require_training(plugin: Any, command: str = "run") -> None:
    """Raise a one-line `PluginError` naming the install command when ``tl COMMAND PLUGIN``
    cannot train here (an inference-only install). ``plugin``: a plugin, or its name."""
    missing = missing_training_modules(plugin)
    if not missing:
        return
    name = plugin if isinstance(plugin, str) else plugin.name
    raise PluginError(
        f"tl {command} {name} trains a model and needs {', '.join(missing)}, which this "
        "inference-only install lacks (tl predict / evaluate / export / serve work without it)",
        f"tl {command} {name}",
        f'pip install "tl[train]" "tl-{name}[train]" (from a tl checkout: '
        f'pip install ".[train]" "./plugins/{name}[train]")',
    )
