"""What a client did wrong, as an HTTP status and the one-line ``what — how to fix``."""

from __future__ import annotations


class RequestError(Exception):
    """A request the server cannot serve; the client gets ``{"error": "what — fix"}``."""

    def __init__(self, status: int, what: str, fix: str = "") -> None:
        self.status = status
        self.what = " ".join(what.split())
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.what} — {self.fix}" if self.fix else self.what


def bad_request(what: str, fix: str) -> RequestError:
    return RequestError(400, what, fix)


def model_failure(exc: BaseException) -> RequestError | None:
    """onnxruntime refusing one request's values (an index out of range, a NaN where the
    graph checks): the client's input, answered 400 — not a server error."""
    if type(exc).__module__.split(".")[0] != "onnxruntime":
        return None
    first = (str(exc).splitlines() or [""])[0]
    detail = first.split(":", 2)[-1].strip()[:200] if first else type(exc).__name__
    return RequestError(
        400, f"the model cannot run on this input ({detail})", "check the input values"
    )
