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


def one_line_error(code: int, err: str, *needles: str) -> None:
    """Assert exit 2 with one ``error: …`` line on stderr that contains every needle."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
