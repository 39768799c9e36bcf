"""Request bodies under `tl serve`'s size limit, compressed ones included."""

from __future__ import annotations

import gzip
import zlib

import pytest
from tl.core.serving.bodies import BodyTooLarge, inflate
from tl.core.serving.errors import RequestError

LIMIT = 2**20


def test_gzip_and_deflate_bodies_inflate_to_the_original():
    body = b'{"inputs": []}' * 1000
    assert inflate(gzip.compress(body), "gzip", LIMIT) == body
    assert inflate(zlib.compress(body), "deflate", LIMIT) == body


def test_every_member_of_a_gzip_stream_is_read():
    assert inflate(gzip.compress(b"abc") + gzip.compress(b"def"), "gzip", LIMIT) == b"abcdef"


def test_a_body_inflating_past_the_limit_is_refused_without_inflating_it():
    bomb = gzip.compress(b"\0" * (64 * LIMIT))  # 64 MiB of zeros in ~64 KB
    assert len(bomb) < LIMIT // 8
    with pytest.raises(BodyTooLarge) as caught:
        inflate(bomb, "gzip", LIMIT)
    assert caught.value.status == 413 and "--max-body-mb" in caught.value.message
    # one byte over is refused, exactly the limit is not
    assert len(inflate(gzip.compress(b"x" * LIMIT), "gzip", LIMIT)) == LIMIT
    with pytest.raises(BodyTooLarge):
        inflate(gzip.compress(b"x" * (LIMIT + 1)), "gzip", LIMIT)
    with pytest.raises(BodyTooLarge):  # spread over members
        inflate(gzip.compress(b"x" * (LIMIT // 2 + 1)) * 2, "gzip", LIMIT)


@pytest.mark.parametrize(
    "body, encoding",
    [
        (b"not compressed", "gzip"),
        (gzip.compress(b"cut short" * 100, mtime=0)[:-12], "gzip"),
        (gzip.compress(b"ok", mtime=0) + b"trailing junk", "gzip"),
        (b"not compressed", "deflate"),
        (zlib.compress(b"cut short" * 100)[:-6], "deflate"),
    ],
    ids=["gzip-not-compressed", "gzip-cut-short", "gzip-trailing-junk", "deflate-not-compressed",
         "deflate-cut-short"],
)  # fmt: skip
def test_bad_compressed_data_is_the_clients_400(body, encoding):
    with pytest.raises(RequestError) as caught:
        inflate(body, encoding, LIMIT)
    assert caught.value.status == 400
    assert caught.value.message == f"the body is not valid {encoding} data — compress it again"
