"""Schema-driven fuzzing of the HTTP service (schemathesis), in-process, from the app's own OpenAPI.

Schemathesis generates requests that fit the declared schema (positive) and requests that break it
(negative: wrong types, out-of-range numbers, missing or extra fields, other media types); a third run
keeps the positive requests but names real items, so most of them reach the model. Every answer must
be a declared status of its operation, never a 5xx, with the declared content type and a body matching
the declared schema; a schema-valid request must be answered, or refused for what only the catalog and
the model know (``UNSERVABLE``): any other refusal means the schema promises what the service refuses.
Bounded to a few hundred requests, derandomised so CI sends the same ones whatever ran before.
"""

from __future__ import annotations

import importlib
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.internal.cache import LRUCache
from hypothesis.internal.conjecture import providers
from schemathesis import GenerationMode, Response
from schemathesis.specs.openapi.checks import positive_data_acceptance

from llara.errors import LlaraError
from llara.serving.recommend import Query, Recommendation, Recommender
from llara.serving.service import create_app

EXAMPLES = 100  # per run below; half as many when the model ranks most of them
#: why the service may refuse a schema-valid request (422): an unknown title, an id past the catalog, a
#: title of several items, a repeated candidate, a history holding every item, retrieval without a backbone
UNSERVABLE = (
    "is not a known title",
    "is out of range",
    "is the title of several items",
    "candidates repeat item",
    "the history holds every item",
    "has no SR backbone to retrieve with",
)
#: the same requests on every run: a fixed seed, no example database
REPEATABLE = settings(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(autouse=True)
def no_constants_from_imported_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypothesis mixes constants from the local modules imported so far (llara's) into what it draws, so
    the requests would depend on which tests ran first and what they imported: leave those out."""
    monkeypatch.setattr(providers, "_get_local_constants", providers.Constants)
    monkeypatch.setattr(providers, "CONSTANTS_CACHE", LRUCache(1024))


@pytest.fixture(scope="module")
def service_schema(recommender: Recommender) -> schemathesis.BaseSchema:
    return schema_of(recommender)


def schema_of(recommender: Recommender) -> schemathesis.BaseSchema:
    """The schema schemathesis fuzzes: the app's own, called in-process."""
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(recommender, batch_wait_ms=0))


def real_items(recommender: Recommender, real: bool) -> st.SearchStrategy[list[int] | None]:
    """Distinct item ids of the catalog (None: keep what schemathesis generated)."""
    ids = st.lists(st.integers(0, recommender.num_items - 1), min_size=1, max_size=15, unique=True)
    return ids if real else st.none()


def refused_as_unservable(response: Response) -> bool:
    """Whether ``response`` is a 422 for what only the catalog and the model know (``UNSERVABLE``)."""
    return response.status_code == 422 and any(reason in response.json()["detail"] for reason in UNSERVABLE)


def fuzz(
    schema: schemathesis.BaseSchema, recommender: Recommender, operation: tuple[str, str], mode: GenerationMode,
    real: bool, config: settings,
) -> Counter[int]:
    """Send generated requests (as many as ``config`` says) to ``operation`` (method, path), check every
    answer, and count the statuses; raises on an answer that fails a check."""
    method, path = operation
    statuses: Counter[int] = Counter()

    @config
    @given(schema[path][method].as_strategy(generation_mode=mode), real_items(recommender, real), st.data())
    def check(case: schemathesis.Case, history: list[int] | None, data: st.DataObject) -> None:
        if history is not None:
            case.body["history"] = history
            if case.body.get("candidates") is not None:
                case.body["candidates"] = data.draw(real_items(recommender, True))
        # Instead of positive_data_acceptance (any 422 fails it): the schema cannot say which items exist.
        response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
        if mode is GenerationMode.POSITIVE:
            assert response.status_code == 200 or refused_as_unservable(response), (case.body, response.text)
        statuses[response.status_code] += 1

    check()
    return statuses


@pytest.mark.parametrize(
    ("method", "path", "mode", "real"),
    [
        ("POST", "/recommend", GenerationMode.POSITIVE, False),
        ("POST", "/recommend", GenerationMode.POSITIVE, True),
        ("POST", "/recommend", GenerationMode.NEGATIVE, False),
        ("GET", "/health", GenerationMode.POSITIVE, False),  # it takes no input, so nothing negative exists
    ],
)
def test_no_request_gets_a_5xx_or_an_undeclared_answer(
    service_schema: schemathesis.BaseSchema, recommender: Recommender, method: str, path: str,
    mode: GenerationMode, real: bool,
) -> None:
    examples = EXAMPLES // 2 if real else EXAMPLES
    config = settings(REPEATABLE, max_examples=examples)
    statuses = fuzz(service_schema, recommender, (method, path), mode, real, config)
    assert statuses and max(statuses) < 500, statuses
    if real:
        assert statuses[200] >= examples // 2, statuses  # the model ranked most of them


class _Broken:
    """The recommender with one fault: ranking raises (a bug: 500), or every query is refused for a
    reason the schema does not state (a 422 a schema-valid request should not get)."""

    def __init__(self, recommender: Recommender, fault: str) -> None:
        self._inner = recommender
        self._fault = fault

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def rank(self, queries: Sequence[Query]) -> list[list[Recommendation]]:
        if self._fault == "rank":
            raise RuntimeError("a bug in ranking")
        return self._inner.rank(queries)

    def query(self, *args: Any) -> Query:
        if self._fault == "query":
            raise LlaraError("refused for a reason the schema does not state")
        return self._inner.query(*args)


@pytest.mark.parametrize(
    ("fault", "failure", "message"),
    [
        ("rank", RuntimeError, "a bug in ranking"),  # the in-process app raises what it answered 500 for
        ("query", AssertionError, "refused for a reason the schema does not state"),
    ],
)
def test_the_fuzzing_catches_a_bug_and_an_unstated_refusal(
    recommender: Recommender, fault: str, failure: type[Exception], message: str
) -> None:
    broken = _Broken(recommender, fault)
    first_failure = settings(REPEATABLE, max_examples=10, phases=[Phase.generate])  # no shrinking
    with pytest.raises(failure, match=message):
        fuzz(schema_of(broken), broken, ("POST", "/recommend"), GenerationMode.POSITIVE, True, first_failure)


def test_the_requests_do_not_depend_on_what_was_imported_before(
    service_schema: schemathesis.BaseSchema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bodies() -> list[object]:
        drawn: list[object] = []

        @settings(REPEATABLE, max_examples=40)
        @given(service_schema["/recommend"]["POST"].as_strategy(generation_mode=GenerationMode.POSITIVE))
        def collect(case: schemathesis.Case) -> None:
            drawn.append(case.body)

        collect()
        return drawn

    before = bodies()
    constants = ", ".join([*(repr(f"Title {i}") for i in range(50)), *(str(7 * i + 3) for i in range(50))])
    (tmp_path / "fuzz_constants.py").write_text(f"VALUES = [{constants}]\n", encoding="utf-8")
    monkeypatch.syspath_prepend(tmp_path)
    try:
        importlib.import_module("fuzz_constants")  # a local module whose constants hypothesis would pick up
        assert bodies() == before
    finally:
        sys.modules.pop("fuzz_constants", None)
