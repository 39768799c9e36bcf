"""User-facing errors: one line, exit code 2, `error: what (where) — how to fix`."""

from __future__ import annotations

EXIT_USER_ERROR = 2


class TLError(Exception):
    """An error the user can act on. Rendered by the CLI as a single line, exit code 2."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, what: str, where: object = "", fix: str = "") -> None:
        self.what = what
        self.where = str(where) if where not in (None, "") else ""
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        text = f"error: {self.what}"
        if self.where:
            text += f" ({self.where})"
        if self.fix:
            text += f" — {self.fix}"
        # names taken from user data (column names, paths) may hold line breaks: one line
        return " ".join(text.splitlines()) if len(text.splitlines()) > 1 else text


class DataError(TLError):
    """Input data is missing, corrupt or does not fit what the plugin expects."""


class ConfigError(TLError):
    """A flag, config file or option is wrong."""


class WeightsError(TLError):
    """Pretrained weights cannot be found, downloaded or loaded."""


class PluginError(TLError):
    """A plugin is missing, broken or incompatible."""


class ExportError(TLError):
    """The ONNX export failed or does not match the PyTorch model."""


class OutputError(TLError):
    """An output cannot be written (disk full, read-only folder); earlier outputs are intact."""


class Interrupted(TLError):
    """SIGINT / SIGTERM during training: stopped between batches, last checkpoint kept."""

    def __init__(self, signum: int, what: str, where: object = "", fix: str = "") -> None:
        self.exit_code = 128 + int(signum)  # 130 for Ctrl-C, 143 for SIGTERM, as shells do
        super().__init__(what, where, fix)
