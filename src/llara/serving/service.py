"""The HTTP service: ``POST /recommend`` ranks candidates for a history; ``GET /health``; OpenAPI at /docs.

Without ``candidates`` the SR backbone retrieves its top ``num_candidates`` of the catalog and the LLM
re-ranks them (``llara.serving.recommend``); ``candidates_from: "random"`` draws them as the protocol
does; a ``candidates`` list ranks those items.

Concurrent requests are batched: a worker task collects queued requests for up to ``batch_wait_ms``
(or until ``max_batch`` are waiting) and ranks them in one scoring batch, in a thread, so the event
loop keeps accepting requests. Bad input never reaches the model: a request head must arrive whole within
``header_timeout_s`` (else 408 and the connection closed; ``llara.serving.server``), the body size is capped
(413), a body that stops short of its Content-Length times out (408), a body without a JSON Content-Type
is refused (415), the JSON is validated by pydantic against the published schema (422; strict types:
``true`` is no number), and unknown items come back as 422 with close titles suggested. Every error body,
the server's own 400 and 408 and a 500 included, is ``{"detail": "<one readable line>"}``, and no
detail echoes more than ``MAX_DETAIL`` characters of the client's input.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    StrictStr,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException

from llara.errors import LlaraError
from llara.serving.recommend import SCORE_MEANINGS, Query, Recommendation, Recommender

MAX_HISTORY = 200
MAX_CANDIDATES = 100
MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT_S = 10.0
MAX_SEED = 2**32 - 1
#: the most characters of a client's input one name or message of an error echoes, and a whole detail
MAX_ECHO = 200
MAX_DETAIL = 1000
_CUT = " [... {} characters left out ...] "
#: a title needs a character ``str.strip`` keeps: one outside Python's whitespace, spelled out so that
#: JSON Schema (ECMA-262), pydantic (Rust regex) and Python agree on it
TITLE_PATTERN = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _whole_float_as_int(value: object) -> object:
    """JSON Schema counts 5.0 as an integer: a float without a fraction becomes that int (5.5 does not)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def whole_number(low: int, high: int | None = None) -> Any:
    """An integer field in [``low``, ``high``]: 5.0 counts as 5, as in JSON Schema; 5.5, "5" and true are
    refused. The bounds sit on the integer itself, so the published schema shows them."""
    return Annotated[StrictInt, Field(ge=low, le=high), BeforeValidator(_whole_float_as_int)]


def _item_form(value: object) -> str:
    """How an item is named: by a title (a string) or by an id (anything else: checked as one)."""
    return "title" if isinstance(value, str) else "id"


Title = Annotated[StrictStr, Field(min_length=1, pattern=TITLE_PATTERN)]
#: an item id or title; an error names the form it checked (``history.0.title: String should ...``)
ItemRef = Annotated[
    Annotated[whole_number(0), Tag("id")] | Annotated[Title, Tag("title")], Discriminator(_item_form)
]
#: the request schema's own statement of the rule ``RecommendRequest`` checks: not a candidates list and a
#: candidates_from together
ONE_SOURCE = {
    "not": {
        "required": ["candidates", "candidates_from"],
        "properties": {"candidates": {"type": "array"}, "candidates_from": {"type": "string"}},
    }
}


class RecommendRequest(BaseModel):
    """A history (oldest first; only the last ``history_len`` items enter the prompt) and optional candidates
    (a list, or where to find them: not both)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_SOURCE)

    history: list[ItemRef] = Field(
        min_length=1, max_length=MAX_HISTORY, description="Item titles or ids, oldest first."
    )
    candidates: list[ItemRef] | None = Field(
        None, min_length=1, max_length=MAX_CANDIDATES, description="Items to rank; omitted: see candidates_from."
    )
    candidates_from: Literal["retrieval", "random"] | None = Field(
        None,
        description="Without candidates: retrieval (the SR backbone's top num_candidates of the catalog) or "
        "random (drawn as the protocol does); omitted: retrieval when the model has an SR backbone, else random.",
    )
    num_candidates: whole_number(1, MAX_CANDIDATES) | None = Field(
        None, description="How many candidates to retrieve or draw (default: the data's)."
    )
    k: whole_number(1, MAX_CANDIDATES) = Field(10, description="How many ranked items to return.")
    seed: whole_number(0, MAX_SEED) | None = Field(
        None, description="Seed for drawing candidates (random when omitted)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> RecommendRequest:
        """Candidates come from one place (``ONE_SOURCE`` says the same in the schema)."""
        if self.candidates is not None and self.candidates_from is not None:
            raise PydanticCustomError("one_source", "give candidates or candidates_from, not both")
        return self


class ErrorResponse(BaseModel):
    """What every refused request gets back."""

    detail: str = Field(description="What was wrong with the request, in one line.")


#: the statuses /recommend answers besides 200, as OpenAPI declares them
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "The body could not be parsed"),
        (408, "The body did not arrive in time (shorter than its Content-Length?)"),
        (413, "The body is too large"),
        (415, "The body is not JSON"),
        (422, "Invalid input: a field, an unknown item, a repeated candidate"),
    )
}


class RankedItem(BaseModel):
    """One recommended item."""

    rank: int = Field(description="The final rank (1 = best): the LLM's, or the blend's when an SR weight is set.")
    item_id: int
    title: str
    score: float = Field(
        description="The LLM's ranking score (higher is better), by what the model ranks by: "
        + "; ".join(f"{score}: the {meaning}" for score, meaning in SCORE_MEANINGS.items())
        + " (plus the SR prior where the model has one)."
    )
    llm_rank: int = Field(description="Rank among the candidates by the LLM's score alone.")
    sr_score: float | None = Field(description="The SR backbone's score (higher is better); null without one.")
    sr_rank: int | None = Field(description="Rank among the candidates by the SR score alone; null without one.")


class RecommendResponse(BaseModel):
    """The top ``k`` of the ranked candidates."""

    items: list[RankedItem]
    history: list[int] = Field(description="The resolved history ids that entered the prompt.")
    num_candidates: int
    candidates_from: Literal["retrieval", "random", "given"] = Field(
        description="retrieval (the SR backbone's top of the catalog), random (drawn) or given (the request's)."
    )


@dataclass
class Batcher:
    """Collects concurrent queries and ranks them together with ``rank`` (run in a worker thread)."""

    rank: Callable[[list[Query]], list[list[Recommendation]]]
    max_batch: int = 16
    wait_s: float = 0.005
    requests: int = 0
    batches: int = 0
    _queue: asyncio.Queue[tuple[Query, asyncio.Future]] = field(default_factory=asyncio.Queue)

    async def submit(self, query: Query) -> list[Recommendation]:
        """Queue ``query``; resolves with its full ranking once its batch has run."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((query, future))
        return await future

    async def run(self) -> None:
        """Worker loop: take one request, wait briefly for more, rank the batch, answer each."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < self.max_batch and (remaining := deadline - loop.time()) > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            await self._answer(batch)

    async def _answer(self, batch: Sequence[tuple[Query, asyncio.Future]]) -> None:
        try:
            results = await asyncio.to_thread(self.rank, [query for query, _ in batch])
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.requests += len(batch)
        self.batches += 1
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def create_app(
    recommender: Recommender,
    max_batch: int = 16,
    batch_wait_ms: float = 5.0,
    max_body_bytes: int = MAX_BODY_BYTES,
    body_timeout_s: float = BODY_TIMEOUT_S,
) -> FastAPI:
    """The FastAPI app serving ``recommender`` (see the module docstring)."""
    batcher = Batcher(recommender.rank, max_batch=max_batch, wait_s=batch_wait_ms / 1000)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    app = FastAPI(
        title="LLaRA recommender",
        description="Ranks candidate items for a user's history with a LLaRA model.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, timeout_s=body_timeout_s)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    model_info = getattr(recommender.model, "info", {})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness plus what is served and how many requests and batches have run."""
        return {
            "status": "ok",
            "base_model": model_info.get("base_model"),
            "prompt_mode": recommender.model.prompt_mode,
            "items": recommender.num_items,
            "retrieval": recommender.backbone is not None,
            "requests": batcher.requests,
            "batches": batcher.batches,
        }

    @app.post("/recommend", response_model=RecommendResponse, responses=ERROR_RESPONSES)
    async def recommend(request: RecommendRequest) -> RecommendResponse:
        """Rank the candidates (retrieved, drawn or given) and return the top ``k``."""
        try:
            candidates = request.candidates if request.candidates is not None else request.candidates_from
            query = recommender.query(request.history, candidates, request.seed, request.num_candidates)
            ranked = await batcher.submit(query)
        except LlaraError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        items = [RankedItem(**vars(rec)) for rec in ranked[: request.k]]
        return RecommendResponse(
            items=items, history=query.history, num_candidates=len(query.candidates), candidates_from=query.source
        )

    return app


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with one readable line per problem (``body.history: List should have at least 1 item``), each
    name and message cut to ``MAX_ECHO`` characters; 415 when the body was not sent as JSON."""
    assert isinstance(exc, RequestValidationError)
    content_type = request.headers.get("content-type")
    if content_type is None:
        return error_response(415, "the request has no Content-Type; send the body as application/json")
    if not _is_json(content_type):
        detail = f"content type {clip(content_type)!r} is not supported; send the body as application/json"
        return error_response(415, detail)
    problems = [f"{'.'.join(clip(str(p)) for p in err['loc'])}: {clip(err['msg'])}" for err in exc.errors()]
    return error_response(422, "; ".join(problems))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Every HTTP error the app raises (404, 405, the handler's 422) in the one JSON shape."""
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug, not the client's doing: 500 in the JSON shape, without the exception's text (the server
    logs the traceback)."""
    return error_response(500, "internal server error")


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` if it fits in ``limit`` characters, else its start and its end around a note of how many
    characters were left out (``limit`` characters in all): a client's input never comes back whole."""
    if len(text) <= limit:
        return text
    room = limit - len(_CUT.format(len(text)))
    head, tail = room - room // 2, room // 2
    return text[:head] + _CUT.format(len(text) - head - tail) + text[len(text) - tail :]


def _is_json(content_type: str) -> bool:
    """Whether a Content-Type names JSON (``application/json`` or ``application/<x>+json``)."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def error_response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """``{"detail": detail}`` with ``status``: the body of every refused request (the detail cut to
    ``MAX_DETAIL`` characters, so that no echoed input comes back whole)."""
    return JSONResponse(status_code=status, content={"detail": clip(detail, MAX_DETAIL)}, headers=headers)


class BodyLimit:
    """ASGI middleware: read the request body up to ``max_bytes`` within ``timeout_s``; 413 beyond the
    size, 408 (and the connection closed) when the body stops short of its Content-Length."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int, timeout_s: float = BODY_TIMEOUT_S) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, 413, f"request body exceeds {self.max_bytes} bytes")
            return
        try:
            body = await asyncio.wait_for(self._read(receive), self.timeout_s)
        except asyncio.TimeoutError:
            detail = f"the request body did not arrive within {self.timeout_s:g} s (shorter than its Content-Length?)"
            await self._refuse(send, 408, detail, {"connection": "close"})
            return
        if body is None:  # the client went away
            return
        if len(body) > self.max_bytes:
            await self._refuse(send, 413, f"request body exceeds {self.max_bytes} bytes")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Callable) -> bytes | None:
        """The whole body, stopping once it exceeds ``max_bytes``; None on a disconnect."""
        body, more = b"", True
        while more and len(body) <= self.max_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
        return body

    @staticmethod
    async def _refuse(send: Callable, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        await error_response(status, detail, headers)({"type": "http"}, _never_called, send)


def _replay(body: bytes, receive: Callable) -> Callable[[], Awaitable[dict]]:
    """A ``receive`` that yields the buffered body once, then defers to the real one (disconnects)."""
    sent = False

    async def replayed() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _never_called() -> dict:
    raise RuntimeError("a refused request's body is not read")
