"""Progress output: a tqdm bar on a terminal, plain log lines otherwise (CI, files)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO


class ProgressReporter:
    """Writes log lines to stderr and to ``log.txt`` in the run directory; shows bars on a tty."""

    def __init__(
        self, log_file: Path | None = None, enabled: bool = True, stream: TextIO | None = None
    ):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.log_file = log_file
        self._start = time.time()

    def log(self, message: str) -> None:
        line = f"[{time.time() - self._start:7.1f}s] {message}"
        if self.enabled:
            if self.tty:
                from tqdm import tqdm

                tqdm.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)
        if self.log_file is not None:
            with open(self.log_file, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")

    def bar(self, total: int, desc: str) -> Any:
        """A context-managed bar; a no-op object when not on a terminal."""
        if self.tty:
            from tqdm import tqdm

            return tqdm(total=total, desc=desc, file=self.stream, leave=False, dynamic_ncols=True)
        return _NullBar()


class _NullBar:
    def __enter__(self) -> _NullBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        return None
