"""The HTTP service over real loopback HTTP: recommendations, health, docs, batching, and bad requests."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from llara.serving.recommend import Recommender
from llara.serving.server import running_server
from llara.serving.service import create_app

BODY_LIMIT = 4096


@pytest.fixture(scope="module")
def base_url(recommender: Recommender) -> Iterator[str]:
    """The real app under uvicorn in a thread, on a free loopback port."""
    app = create_app(recommender, max_batch=8, batch_wait_ms=30, max_body_bytes=BODY_LIMIT)
    with running_server(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        yield http


def test_a_moe_lora_export_is_served(moe_export, tiny_data) -> None:
    recommender = Recommender.load(moe_export, tiny_data.root)
    body = {"history": [3, 4, 5], "candidates": [9, 6, 30, 12], "k": 4}
    with running_server(create_app(recommender, batch_wait_ms=30)) as url, httpx.Client(base_url=url, timeout=30) as http:
        with ThreadPoolExecutor(2) as pool:  # two requests in one batch: each row keeps its own gate weights
            answers = list(pool.map(lambda b: http.post("/recommend", json=b), [body, {**body, "history": [20, 21]}]))
    assert [answer.status_code for answer in answers] == [200, 200]
    expected = recommender.recommend(body["history"], body["candidates"], k=4)
    assert [item["item_id"] for item in answers[0].json()["items"]] == [r.item_id for r in expected]
    assert [item["score"] for item in answers[0].json()["items"]] == pytest.approx([r.score for r in expected], abs=1e-4)


def test_health_and_openapi_docs(client: httpx.Client) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["items"] == 40 and health["prompt_mode"] == "text"
    schema = client.get("/openapi.json").json()
    assert "/recommend" in schema["paths"] and "RecommendRequest" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_recommend_ranks_given_candidates(client: httpx.Client, recommender: Recommender) -> None:
    body = {"history": ["Item 3", 4, "item 5"], "candidates": [9, "Item 6", 30, 12], "k": 3}
    response = client.post("/recommend", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    expected = recommender.recommend([3, 4, 5], [9, 6, 30, 12], k=3)
    assert [item["item_id"] for item in payload["items"]] == [r.item_id for r in expected]
    assert [item["rank"] for item in payload["items"]] == [1, 2, 3]
    scores = [item["score"] for item in payload["items"]]
    assert scores == sorted(scores, reverse=True)
    assert payload["history"] == [3, 4, 5] and payload["num_candidates"] == 4


def test_recommend_draws_candidates_when_none_given(client: httpx.Client) -> None:
    payload = client.post("/recommend", json={"history": [1, 2], "k": 20, "seed": 5}).json()
    items = [item["item_id"] for item in payload["items"]]
    assert payload["num_candidates"] == 20 and len(set(items)) == 20 and not {1, 2} & set(items)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"history": []}, "history: List should have at least 1 item"),
        ({"history": ["No Such Movie"]}, "not a known title"),
        ({"history": ["Itme 7"]}, "did you mean 'Item 7'"),
        ({"history": [99]}, "out of range"),
        ({"history": [1], "candidates": list(range(101))}, "candidates: List should have at most 100 items"),
        ({"history": list(range(201))}, "history: List should have at most 200 items"),
        ({"history": "Item 3"}, "history: Input should be a valid list"),
        ({"history": [1.5]}, "history.0"),
        ({"history": [True]}, "history.0"),
        ({"history": [1], "k": "ten"}, "k: Input should be a valid integer"),
        ({"history": [1], "k": 0}, "k: Input should be greater than or equal to 1"),
        ({"history": [1], "candidates": [2, 2]}, "repeat item"),
        ({"history": [1], "candidates": []}, "candidates: List should have at least 1 item"),
        ({"history": [1], "user": "x"}, "user: Extra inputs are not permitted"),
        ([1, 2], "Input should be a valid dictionary"),
    ],
)
def test_bad_requests_get_a_clear_422(client: httpx.Client, body: object, fragment: str) -> None:
    response = client.post("/recommend", json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]


def test_malformed_and_oversized_bodies_are_refused(client: httpx.Client) -> None:
    broken = client.post("/recommend", content=b'{"history": [1,', headers={"content-type": "application/json"})
    assert broken.status_code == 422 and "JSON" in broken.json()["detail"]
    big = {"history": ["x" * BODY_LIMIT]}
    assert client.post("/recommend", json=big).status_code == 413
    chunks = (b'{"history": ["' + b"y" * 1024 for _ in range(8))  # streamed without a Content-Length
    streamed = client.post("/recommend", content=chunks, headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "exceeds" in streamed.json()["detail"]
    assert client.get("/recommend").status_code == 405
    assert client.get("/health").status_code == 200  # the service survived all of it


def test_concurrent_requests_are_batched(client: httpx.Client, base_url: str) -> None:
    before = client.get("/health").json()
    body = {"history": [3, 4, 5], "candidates": [6, 7, 8, 9], "k": 2}

    def call(_: int) -> int:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            return http.post("/recommend", json=body).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(call, range(16)))
    after = client.get("/health").json()
    assert statuses == [200] * 16
    assert after["requests"] - before["requests"] == 16
    assert after["batches"] - before["batches"] < 16  # some requests shared a ranking batch


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"history": [1], "seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({"history": [1], "seed": False}, "seed: Input should be a valid integer"),
        ({"history": [1], "k": True}, "k: Input should be a valid integer"),
        ({"history": [-1]}, "history.0"),
        ({"history": [1], "candidates": [2, -3]}, "candidates.1"),
    ],
)
def test_loose_numbers_get_a_422_and_the_connection_stays_open(client: httpx.Client, body: object, fragment: str):
    response = client.post("/recommend", json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]
    assert response.headers.get("connection") != "close"
    assert client.get("/health").status_code == 200


def test_drawn_candidates_with_the_largest_seed(client: httpx.Client) -> None:
    response = client.post("/recommend", json={"history": [1, 2], "seed": 2**32 - 1, "k": 3})
    assert response.status_code == 200 and response.json()["num_candidates"] == 20


def test_every_error_status_is_declared_with_its_body(client: httpx.Client) -> None:
    responses = client.get("/openapi.json").json()["paths"]["/recommend"]["post"]["responses"]
    assert set(responses) == {"200", "400", "408", "413", "415", "422"}
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for status in ("400", "408", "413", "415", "422"):
        assert responses[status]["content"]["application/json"]["schema"] == error


def test_a_body_that_is_not_json_is_named_and_one_that_is_not_utf8_is_a_400(client: httpx.Client) -> None:
    text = client.post("/recommend", content=b"history=1", headers={"content-type": "text/plain; charset=utf-8"})
    assert text.status_code == 415 and "'text/plain; charset=utf-8'" in text.json()["detail"]
    latin1 = client.post("/recommend", content=b'{"history": ["\xff"]}', headers={"content-type": "application/json"})
    assert latin1.status_code == 400 and latin1.json() == {"detail": "There was an error parsing the body"}


def test_a_body_shorter_than_its_content_length_times_out(recommender: Recommender) -> None:
    import socket
    from urllib.parse import urlsplit

    with running_server(create_app(recommender, body_timeout_s=0.3)) as url:
        address = urlsplit(url)
        with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
            head = b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            sock.sendall(head + b'Content-Length: 100\r\n\r\n{"history": [1')
            reply = b""
            while chunk := sock.recv(4096):  # the server answers, then closes the connection
                reply += chunk
    assert reply.startswith(b"HTTP/1.1 408") and b"Content-Length" in reply
