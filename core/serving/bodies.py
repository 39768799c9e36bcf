"""Request bodies under the server's size limit (``--max-body-mb``).

The limit holds for what arrives (a declared Content-Length over it is refused before the
body is read; a chunked body is cut off once it passes it) and for what a gzip/deflate
body inflates to, so a small compressed request cannot expand into the server's memory.
"""

from __future__ import annotations

import zlib

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Message, Receive, Scope

from .errors import RequestError, bad_request

OFF_LOOP_BYTES = 256 * 1024  # bodies larger than this are inflated and parsed off the event loop


class BodyTooLarge(RequestError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"the request body is over {limit / 2**20:g} MiB",
            "send less, or start tl serve with a larger --max-body-mb",
        )


def too_large(limit: int) -> str:
    return BodyTooLarge(limit).message


def content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises `BodyTooLarge` once the body passes ``limit`` bytes."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_limited


async def read_body(request: Request) -> bytes:
    """The body, inflated if its Content-Encoding is gzip or deflate (to at most the limit
    the envelope put in the scope)."""
    body = await request.body()
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "deflate"):
        raise RequestError(
            415, f"content encoding '{encoding}' is not supported", "send gzip, deflate or none"
        )
    limit = int(request.scope["tl"]["max_body"])
    if len(body) > OFF_LOOP_BYTES:
        return await run_in_threadpool(inflate, body, encoding, limit)
    return inflate(body, encoding, limit)


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` decompressed (each member of a gzip stream in turn); more than ``limit``
    bytes of output is `BodyTooLarge`, found without inflating past it."""
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    parts: list[bytes] = []
    size, rest = 0, body
    try:
        while rest:
            stream = zlib.decompressobj(wbits)
            part = stream.decompress(rest, limit - size + 1)
            size += len(part)
            if size > limit:
                raise BodyTooLarge(limit)
            if not stream.eof:
                raise zlib.error("the stream is cut short")
            parts.append(part)
            rest = stream.unused_data if encoding == "gzip" else b""
    except zlib.error:
        raise bad_request(f"the body is not valid {encoding} data", "compress it again") from None
    return b"".join(parts)
