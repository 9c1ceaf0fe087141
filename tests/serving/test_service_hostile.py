"""Hostile HTTP clients against the real server (uvicorn on loopback): request heads that never finish,
errors outside the handler, bodies without a JSON Content-Type, huge echoed values, blank titles, whole
floats, huge seeds and both candidate sources at once."""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from llara.serving.recommend import Query, Recommendation, Recommender
from llara.serving.server import running_server
from llara.serving.service import (
    MAX_DETAIL,
    MAX_SEED,
    TITLE_PATTERN,
    RecommendRequest,
    clip,
    create_app,
)

HEADER_TIMEOUT_S = 0.5
#: how long a test waits for the server to hang up: the header timeout plus generous slack
HANG_UP_WITHIN_S = HEADER_TIMEOUT_S + 2.5


@pytest.fixture(scope="module")
def base_url(recommender: Recommender) -> Iterator[str]:
    """The app under uvicorn with a short header timeout."""
    with running_server(create_app(recommender), header_timeout_s=HEADER_TIMEOUT_S) as url:
        yield url


def post(base_url: str, body: object) -> httpx.Response:
    """POST ``body`` as JSON on a fresh connection (pooled ones would outlive the short header timeout)."""
    return httpx.post(f"{base_url}/recommend", json=body, timeout=30)


def exchange(base_url: str, chunks: Sequence[bytes], pause_s: float = 0.0) -> tuple[bytes, float]:
    """Send ``chunks`` over one raw connection, ``pause_s`` apart (stopping once the server answers or hangs
    up), then read until it hangs up: what came back, and how long after the connection opened."""
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), timeout=HANG_UP_WITHIN_S + 5) as sock:
        start = time.monotonic()
        for chunk in chunks:
            with contextlib.suppress(OSError):  # the server may have hung up already
                sock.sendall(chunk)
            if select.select([sock], [], [], pause_s)[0]:
                break
        reply = b""
        with contextlib.suppress(ConnectionResetError):
            while data := sock.recv(4096):
                reply += data
        return reply, time.monotonic() - start


def json_body(reply: bytes) -> Any:
    """The body of a raw HTTP reply, parsed as JSON."""
    return json.loads(reply.partition(b"\r\n\r\n")[2])


def test_a_request_head_that_never_finishes_gets_a_408_and_the_connection_closed(base_url: str) -> None:
    reply, elapsed = exchange(base_url, [b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-"])
    assert reply.startswith(b"HTTP/1.1 408") and b"application/json" in reply
    assert json_body(reply) == {"detail": f"the request head did not arrive within {HEADER_TIMEOUT_S:g} s"}
    assert HEADER_TIMEOUT_S * 0.9 <= elapsed < HANG_UP_WITHIN_S


def test_a_head_sent_a_byte_at_a_time_is_cut_off_at_the_deadline(base_url: str) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100  # no pause near any idle timeout
    reply, elapsed = exchange(base_url, [head[i : i + 1] for i in range(len(head))], pause_s=0.03)
    assert reply.startswith(b"HTTP/1.1 408") and elapsed < HANG_UP_WITHIN_S


def test_a_silent_connection_is_closed(base_url: str) -> None:
    reply, elapsed = exchange(base_url, [])
    assert reply == b"" and elapsed < HANG_UP_WITHIN_S


def test_the_deadline_holds_for_each_request_of_a_kept_alive_connection(base_url: str) -> None:
    first = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    reply, elapsed = exchange(base_url, [first + b"GET /health HTTP/1.1\r\nHo"])  # the second never ends
    assert reply.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in reply and elapsed < HANG_UP_WITHIN_S


def test_a_head_that_arrives_in_pieces_within_the_deadline_is_served(base_url: str) -> None:
    pieces = [b"GET /health HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n\r\n"]
    reply, _ = exchange(base_url, pieces, pause_s=HEADER_TIMEOUT_S / 10)
    assert reply.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" not in reply


def test_a_malformed_request_gets_the_json_error_shape(base_url: str) -> None:
    reply, _ = exchange(base_url, [b"NOT HTTP AT ALL\r\n\r\n"])
    assert reply.startswith(b"HTTP/1.1 400") and b"application/json" in reply
    assert set(json_body(reply)) == {"detail"}


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/nope", 404), ("GET", "/recommend", 405)])
def test_routing_errors_get_the_json_error_shape(base_url: str, method: str, path: str, status: int) -> None:
    response = httpx.request(method, f"{base_url}{path}", timeout=30)
    assert response.status_code == status and response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"detail"}


class _Failing:
    """The recommender, but its ranking raises (a bug, not bad input)."""

    def __init__(self, recommender: Recommender) -> None:
        self._inner = recommender

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def rank(self, queries: Sequence[Query]) -> list[list[Recommendation]]:
        raise RuntimeError("secret internal state")


def test_an_unexpected_exception_is_a_json_500_without_its_text(recommender: Recommender) -> None:
    with running_server(create_app(_Failing(recommender))) as url:
        response = httpx.post(f"{url}/recommend", json={"history": [1], "candidates": [2, 3]}, timeout=30)
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "internal server error"}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_json_body_without_a_json_content_type_gets_415(base_url: str, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = httpx.post(f"{base_url}/recommend", content=b'{"history": [1]}', headers=headers, timeout=30)
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"history": [1], "x" * 50_000: 1}, "Extra inputs are not permitted"),  # the name is in the location
        ({"history": ["x" * 50_000]}, "is not a known title"),  # the handler names the title
        ({"history": [1], "k": "x" * 50_000}, "Input should be a valid integer"),
        ({"history": [1], "candidates": [f"{i} {'x' * 200}" for i in range(100)]}, "is not a known title"),
    ],
)
def test_an_error_does_not_echo_a_huge_input(base_url: str, body: dict, says: str) -> None:
    response = post(base_url, body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert len(detail) <= MAX_DETAIL and says in detail


def test_clip_keeps_the_start_and_the_end() -> None:
    text = "start " + "x" * 5000 + " end"
    clipped = clip(text, 100)
    assert len(clipped) <= 100 and clipped.startswith("start ") and clipped.endswith(" end")
    assert re.search(r"\[\.\.\. \d+ characters left out \.\.\.\]", clipped)
    assert clip("short", 100) == "short"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"history": [""], "candidates": [""]}, "history.0.title: String should have at least 1 character"),
        ({"history": [" \t\n"]}, "history.0.title: String should match pattern"),
        ({"history": [1], "candidates": [2, "\x1f\u3000\x85"]}, "candidates.1.title: String should match pattern"),
    ],
)
def test_blank_titles_are_refused_by_the_schema(base_url: str, body: dict, says: str) -> None:
    response = post(base_url, body)
    assert response.status_code == 422 and says in response.json()["detail"]


def test_the_title_pattern_is_exactly_what_strip_keeps() -> None:
    pattern = re.compile(TITLE_PATTERN)
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        assert bool(pattern.search(char)) is not char.isspace(), hex(code)
    # pydantic checks the pattern with its own regex engine: it must refuse every whitespace character
    spaces = [chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace()]
    for space in spaces:
        with pytest.raises(ValueError, match="should match pattern"):
            RecommendRequest.model_validate({"history": [space * 3]})
    assert RecommendRequest.model_validate({"history": ["\ufeff", " x "]}).history == ["\ufeff", " x "]


def test_the_published_schema_states_the_title_rule_and_the_seed_bound(base_url: str) -> None:
    schema = httpx.get(f"{base_url}/openapi.json", timeout=30).json()["components"]["schemas"]["RecommendRequest"]
    title = schema["properties"]["history"]["items"]["oneOf"][1]
    assert title["minLength"] == 1 and title["pattern"] == TITLE_PATTERN
    assert schema["properties"]["seed"]["anyOf"][0] == {"type": "integer", "minimum": 0, "maximum": MAX_SEED}
    assert schema["not"]["required"] == ["candidates", "candidates_from"]


@pytest.mark.parametrize(("seed", "status"), [(2**70, 422), (2**32, 422), (-1, 422), (MAX_SEED, 200), (7.0, 200)])
def test_the_seed_is_bounded_to_32_bits(base_url: str, seed: int, status: int) -> None:
    response = post(base_url, {"history": [1, 2], "seed": seed, "k": 2})
    assert response.status_code == status, response.text


def test_whole_floats_count_as_integers_as_in_json_schema(base_url: str) -> None:
    response = post(base_url, {"history": [3.0, 4], "candidates": [5.0, 6, 7], "k": 2.0, "num_candidates": 3.0})
    assert response.status_code == 200, response.text
    assert response.json()["history"] == [3, 4] and len(response.json()["items"]) == 2
    for body in ({"history": [1], "k": 2.5}, {"history": [1], "k": "2"}, {"history": [1], "k": True}):
        assert post(base_url, body).status_code == 422, body


def test_candidates_and_candidates_from_together_are_refused_by_the_schema(base_url: str) -> None:
    both = post(base_url, {"history": [1], "candidates": [2, 3], "candidates_from": "random"})
    assert both.status_code == 422 and both.json()["detail"] == "body: give candidates or candidates_from, not both"
    nulled = post(base_url, {"history": [1], "candidates": None, "candidates_from": "random", "k": 2})
    assert nulled.status_code == 200, nulled.text
