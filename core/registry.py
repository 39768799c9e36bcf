"""Plugin discovery through the entry-point group ``tl.plugins`` (lazy, fault-tolerant).

Entry points are listed without importing them; a plugin is imported only when asked for.
A plugin that fails to import is reported by ``tl plugins`` and skipped, never fatal to tl.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from .errors import PluginError
from .plugin import API_VERSION, Plugin

GROUP = "tl.plugins"
KNOWN = {
    "medical": "X-ray/CT/photo classification from PNG/JPEG/DICOM",
    "fraud": "fraud detection on tabular transactions",
    "recsys": "sequential recommendation for new users and markets",
    "driving": "object detection for driving scenes",
}


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    description: str
    error: str = ""


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def install_hint(name: str) -> str:
    return f"install it: pip install ./plugins/{name}  (or pip install tl-{name})"


def load_plugin(name: str) -> Plugin:
    """Import and instantiate plugin ``name``; a clear error when missing or broken."""
    points = _entry_points()
    if name not in points:
        candidates = sorted(set(points) | set(KNOWN))
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
        if name in KNOWN:
            raise PluginError(f"plugin '{name}' is not installed", "tl.plugins", install_hint(name))
        hint = f"did you mean '{close[0]}'?" if close else "see `tl plugins`"
        if close and close[0] not in points:
            hint += f" {install_hint(close[0])}"
        raise PluginError(f"no plugin named '{name}'", "tl.plugins", hint)
    point = points[name]
    try:
        factory = point.load()
        plugin = factory() if isinstance(factory, type) else factory
    except Exception as exc:
        raise PluginError(
            f"plugin '{name}' failed to load: {type(exc).__name__}: {str(exc)[:160]}",
            point.value,
            "reinstall the plugin or run with --verbose",
        ) from exc
    if getattr(plugin, "api_version", None) != API_VERSION:
        raise PluginError(
            f"plugin '{name}' speaks API {getattr(plugin, 'api_version', '?')}, tl speaks {API_VERSION}",
            point.value,
            "install matching versions of tl and the plugin",
        )
    return plugin


def list_plugins() -> list[PluginInfo]:
    infos = []
    for name, point in sorted(_entry_points().items()):
        dist = point.dist
        info = PluginInfo(
            name=name,
            distribution=dist.name if dist else "?",
            version=dist.version if dist else "?",
            description="",
        )
        try:
            info.description = load_plugin(name).description
        except PluginError as exc:
            info.error = exc.what
        infos.append(info)
    return infos
