"""`tl ARGV` run in the test's own process (no interpreter start-up per call)."""

from __future__ import annotations

import contextlib
import io


def invoke(*argv: str) -> tuple[int, str, str]:
    """`tl ARGV` in this process: exit code, stdout, stderr."""
    from tl.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()
