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

    def bar(self, total: int, desc: str, unit: str = "it") -> Any:
        """A context-managed bar (count, rate in ``unit``/s, ETA); a no-op object when not on
        a terminal."""
        if self.tty:
            from tqdm import tqdm

            return tqdm(total=total, desc=desc, file=self.stream, leave=False, dynamic_ncols=True,
                        unit=f" {unit}", unit_scale=False)  # fmt: skip
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


class Throughput:
    """Progress of a long batch loop (``tl predict``/``tl evaluate``): a bar on a terminal;
    otherwise a log line every ``every`` seconds and one at the end, so a 20k-image job in a
    log file shows that it is alive, how far it is and how fast it goes."""

    def __init__(
        self,
        total: int | None,
        unit: str,
        reporter: ProgressReporter | None = None,
        every: float = 10.0,
        action: str = "predicting",
        label: str | None = None,
        final: bool = True,
    ) -> None:
        """``label`` starts each log line (e.g. ``epoch 2/10``) and names the bar;
        ``final=False`` skips the closing line (when the caller logs its own summary)."""
        self.total, self.unit, self.every, self.action = total, unit, every, action
        self.label, self.final = label, final
        self.reporter = reporter or ProgressReporter()
        self.done = 0
        self._started = self._logged = time.time()
        self._bar: Any = None

    def __enter__(self) -> Throughput:
        if self.reporter.tty:
            desc = self.label or f"{self.action} {self.unit}"
            self._bar = self.reporter.bar(self.total or 0, desc, unit=self.unit)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
        elif exc[0] is None and self.done and self.final:
            self._log()

    def add(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.time() - self._logged >= self.every:
            self._log()

    def _log(self) -> None:
        self._logged = time.time()
        rate = self.done / max(self._logged - self._started, 1e-9)
        of = f"/{self.total:,}" if self.total else ""
        eta = ""
        if self.total and self.done < self.total and rate > 0:
            eta = f", ETA {_duration((self.total - self.done) / rate)}"
        prefix = f"{self.label}: " if self.label else ""
        self.reporter.log(f"{prefix}{self.done:,}{of} {self.unit} ({rate:,.0f} {self.unit}/s{eta})")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 90:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
