"""The ASGI app of `tl serve` (Starlette): the Open Inference Protocol routes, the raw-data
route, health, Prometheus metrics and the operational envelope every request goes through
(access log, metrics, body size limit, JSON errors).

A client never sees a traceback: what it did wrong is a 4xx ``{"error": "what — how to
fix"}``; anything else is a 500 with the same shape, and the traceback goes to the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from .bodies import OFF_LOOP_BYTES, BodyTooLarge, content_length, limited, read_body, too_large
from .errors import RequestError, bad_request
from .metrics import ServerMetrics
from .models import ServedModel
from .protocol import HEADER_LENGTH, encode_infer_response, parse_infer_request
from .raw import PredictOptions, predict_raw

access_log = logging.getLogger("tl.serve.access")
log = logging.getLogger("tl.serve")


@dataclass
class ServerState:
    models: dict[str, ServedModel]
    options: dict[str, PredictOptions]
    metrics: ServerMetrics
    device: str

    def model(self, request: Request) -> ServedModel:
        name = request.path_params["name"]
        request.scope["tl"]["model"] = name if name in self.models else ""
        if name not in self.models:
            raise RequestError(
                404, f"no model named '{name}'", f"served models: {', '.join(self.models)}"
            )
        version = request.path_params.get("version")
        if version not in (None, "", "1"):
            raise RequestError(404, f"model '{name}' has no version {version}", "use version 1")
        return self.models[name]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _endpoint(request: Request, name: str) -> None:
    request.scope["tl"]["endpoint"] = name


# ------------------------------------------------------------------ routes
async def server_metadata(request: Request) -> Response:
    _endpoint(request, "metadata")
    return JSONResponse(
        {"name": "tl", "version": __version__, "extensions": ["binary_tensor_data"]}
    )


async def live(request: Request) -> Response:
    _endpoint(request, "health")
    return JSONResponse({"live": True})


async def ready(request: Request) -> Response:
    _endpoint(request, "health")
    return JSONResponse({"ready": True})


async def model_metadata(request: Request) -> Response:
    _endpoint(request, "metadata")
    return JSONResponse(_state(request).model(request).metadata())


async def model_ready(request: Request) -> Response:
    _endpoint(request, "health")
    served = _state(request).model(request)
    return JSONResponse({"name": served.name, "ready": True})


async def model_config(request: Request) -> Response:
    _endpoint(request, "metadata")
    return JSONResponse(_state(request).model(request).config())


async def repository_index(request: Request) -> Response:
    _endpoint(request, "metadata")
    models = _state(request).models
    return JSONResponse([{"name": n, "version": "1", "state": "READY"} for n in models])


async def list_models(request: Request) -> Response:
    _endpoint(request, "metadata")
    models = _state(request).models.values()
    return JSONResponse({"models": [{"name": m.name, "plugin": m.model.plugin} for m in models]})


async def infer(request: Request) -> Response:
    _endpoint(request, "infer")
    served = _state(request).model(request)
    with served.batcher.expecting() as ticket:
        body = await read_body(request)
        names = [s.name for s in served.outputs]
        header = request.headers.get(HEADER_LENGTH)
        args = (body, header, served.inputs, names)
        parsed = (
            await run_in_threadpool(parse_infer_request, *args)
            if len(body) > OFF_LOOP_BYTES
            else parse_infer_request(*args)
        )
        _check_batch(parsed.feeds, served)
        outputs = await served.infer(parsed.feeds, ticket)
    content, headers = encode_infer_response(served.name, parsed, outputs)
    return Response(content, headers=headers)


async def predict(request: Request) -> Response:
    _endpoint(request, "predict")
    state = _state(request)
    served = state.model(request)
    with served.batcher.expecting() as ticket:
        content = await predict_raw(
            served, state.options[served.name], request, ticket, state.device
        )
    return Response(content, media_type="application/json")


async def metrics(request: Request) -> Response:
    _endpoint(request, "metrics")
    content, kind = _state(request).metrics.exposition()
    return Response(content, headers={"content-type": kind})


def _state(request: Request) -> ServerState:
    return request.app.state.tl


def _check_batch(feeds: dict[str, Any], served: ServedModel) -> None:
    """Inputs that are stacked along axis 0 must agree on the batch size."""
    sizes = {name: a.shape[0] for name, a in feeds.items() if a.ndim}
    if len(set(sizes.values())) > 1:
        raise bad_request(
            f"inputs disagree on the batch size ({sizes})", "send the same number of items in each"
        )
    if served.batcher.max_batch > 1 and 0 in sizes.values():
        raise bad_request("the request holds no items (batch size 0)", "send at least one item")


def _routes() -> list[Route]:
    versioned = [
        ("", model_metadata, "GET"),
        ("/ready", model_ready, "GET"),
        ("/config", model_config, "GET"),
        ("/infer", infer, "POST"),
    ]
    routes = [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/repository/index", repository_index, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{name}/predict", predict, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    for suffix, handler, method in versioned:
        routes.append(Route(f"/v2/models/{{name}}{suffix}", handler, methods=[method]))
        routes.append(
            Route(f"/v2/models/{{name}}/versions/{{version}}{suffix}", handler, methods=[method])
        )
    return routes


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error(
            404, f"no route {request.method} {request.url.path} — see GET /v2 and /v1/models"
        )
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        what = f"{request.method} is not allowed on {request.url.path}"
        return _error(405, f"{what} — use {allowed}" if allowed else what)
    return _error(exc.status_code, f"{exc.detail} — check the request")


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return _error(exc.status, exc.message)


CLIENT_CLOSED = 499  # nginx's "client closed request": kept apart from bad input in /metrics


async def _disconnected(request: Request, exc: Exception) -> Response:
    return _error(
        CLIENT_CLOSED, "the client disconnected before the body was read — resend the request"
    )


async def _unexpected(request: Request, exc: Exception) -> Response:
    return _error(500, "internal server error — see the server log, and report it")


def build_app(
    models: Sequence[ServedModel], metrics: ServerMetrics, *, max_body: int, device: str = "auto"
) -> ASGIApp:
    """The server for ``models`` (already loaded); batchers start and stop with the app."""
    state = ServerState(
        models={m.name: m for m in models},
        options={m.name: PredictOptions(m.plugin) for m in models},
        metrics=metrics,
        device=device,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for served in models:
            served.batcher.start()
        try:
            yield
        finally:
            for served in models:
                await served.batcher.stop()

    app = Starlette(
        routes=_routes(),
        lifespan=lifespan,
        exception_handlers={
            HTTPException: _http_error,
            RequestError: _request_error,
            ClientDisconnect: _disconnected,
            Exception: _unexpected,
        },
    )
    app.state.tl = state
    return Envelope(app, metrics, max_body)


class Envelope:
    """Every request: body size limit, one access-log line, metrics, and no traceback to
    the client (an unexpected exception is logged, answered 500 as JSON)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, max_body: int) -> None:
        self.app, self.metrics, self.max_body = app, metrics, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        scope["tl"] = info = {"model": "", "endpoint": "other", "max_body": self.max_body}
        sent = {"status": 500, "bytes": 0, "started": False}

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["status"], sent["started"] = message["status"], True
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        self.metrics.in_flight.inc()
        try:
            declared = content_length(scope)
            if declared is not None and declared > self.max_body:
                await _send_error(send_counted, 413, too_large(self.max_body))
            else:
                await self.app(scope, limited(receive, self.max_body), send_counted)
        except BodyTooLarge:
            if not sent["started"]:
                await _send_error(send_counted, 413, too_large(self.max_body))
        except Exception:
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            if not sent["started"]:
                await _send_error(
                    send_counted, 500, "internal server error — see the server log, and report it"
                )
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - start
            status = int(sent["status"])
            self.metrics.observe_request(info["model"], info["endpoint"], status, seconds)
            client = scope.get("client") or ("-", 0)
            access_log.info(
                '%s:%s "%s %s HTTP/%s" %d %dB %.1fms',
                client[0], client[1], scope["method"], scope["path"],
                scope.get("http_version", "1.1"), status, sent["bytes"], seconds * 1000,
            )  # fmt: skip


async def _send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
