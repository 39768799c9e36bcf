"""Run the server: load every model, bind, serve with uvicorn, drain on SIGTERM / Ctrl-C.

The socket is bound here, before uvicorn starts, so that a port in use is tl's one-line
error (exit 2) rather than a log line and exit 1. uvicorn stops accepting connections on
SIGTERM, lets the requests in flight finish, then stops the app (and its batchers); after
that it re-raises the signal to the handler that was installed before it — here one that
only asks the server to stop — so a drained server returns normally and `tl serve`
exits 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .app import build_app
from .metrics import ServerMetrics
from .models import ServedModel, load_models

log = logging.getLogger("tl.serve")
DRAIN_SECONDS = 30


@dataclass(frozen=True)
class ServeOptions:
    paths: Sequence[Path]
    names: Sequence[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 32
    max_delay_ms: float = 5.0
    device: str = "auto"
    threads: int | None = None
    max_body_mb: float = 64.0
    access_log: bool = True


def serve(options: ServeOptions) -> None:
    """Serve until SIGTERM / SIGINT; returns once in-flight requests are answered."""
    import uvicorn

    configure_logging(options.access_log)
    metrics = ServerMetrics(options.max_batch)
    models = load_models(
        [Path(p) for p in options.paths],
        list(options.names),
        device=options.device,
        threads=options.threads,
        max_batch=options.max_batch,
        max_delay=options.max_delay_ms / 1000.0,
        metrics=metrics,
    )
    app = build_app(
        models, metrics, max_body=int(options.max_body_mb * 2**20), device=options.device
    )
    sock = bind(options.host, options.port)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=DRAIN_SECONDS,
        server_header=False,
    )
    server = uvicorn.Server(config)
    host, port = sock.getsockname()[:2]
    _announce(models, host, port)
    with _stop_on_signals(server):
        server.run(sockets=[sock])
    if not server.started:
        raise ConfigError("the server did not start", f"{host}:{port}", "see the log above")
    log.info("stopped: every request in flight was answered")


def bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"cannot listen on {host}:{port}: {reason}",
            "--host/--port",
            "choose another --port (or stop what uses it), or a --host of this machine",
        ) from None
    sock.set_inheritable(True)
    return sock


class _stop_on_signals:  # noqa: N801 — used as a context manager
    """SIGTERM / SIGINT ask ``server`` to stop (also before and after uvicorn's own handlers
    are in place); the previous handlers come back afterwards."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.saved: dict[int, Any] = {}

    def _stop(self, signum: int, frame: Any) -> None:
        self.server.should_exit = True

    def __enter__(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.saved[sig] = signal.signal(sig, self._stop)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def _announce(models: Sequence[ServedModel], host: str, port: int) -> None:
    for served in models:
        model = served.model
        tensors = ", ".join(f"{s.name} {s.datatype}{list(s.shape)}" for s in served.inputs)
        log.info(
            "model %s: %s (%s) on %s, inputs %s, max batch %d",
            served.name, model.path, model.plugin, model.providers[0], tensors,
            served.batcher.max_batch,
        )  # fmt: skip
    shown = f"[{host}]" if ":" in host else host
    log.info("serving %d model(s) on http://%s:%d (SIGTERM or Ctrl-C drains and stops)",
             len(models), shown, port)  # fmt: skip


def configure_logging(access_log: bool) -> None:
    """One line per event on stderr: tl's, uvicorn's warnings, and (unless turned off) one
    access line per request."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for name, level in (("tl.serve", logging.INFO), ("uvicorn", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("tl.serve.access").setLevel(logging.INFO if access_log else logging.WARNING)
