"""Schema-driven fuzzing of the HTTP service (schemathesis), in-process, from the app's own OpenAPI.

Schemathesis generates requests that fit the declared schema (positive) and requests that break it
(negative: wrong types, out-of-range numbers, missing or extra fields, other media types); a third run
keeps the positive requests but names real items, so most of them reach the model. Every answer must
be a declared status of its operation, never a 5xx, with the declared content type and a body matching
the declared schema. Bounded to a few hundred requests, derandomised so CI sends the same ones.
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from llara.serving.recommend import Recommender
from llara.serving.service import create_app

EXAMPLES = 100  # per run below; half as many when the model ranks most of them


@pytest.fixture(scope="module")
def service_schema(recommender: Recommender) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(recommender, batch_wait_ms=0))


def real_items(recommender: Recommender, real: bool) -> st.SearchStrategy[list[int] | None]:
    """Distinct item ids of the catalog (None: keep what schemathesis generated)."""
    ids = st.lists(st.integers(0, recommender.num_items - 1), min_size=1, max_size=15, unique=True)
    return ids if real else st.none()


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
    statuses: Counter[int] = Counter()
    examples = EXAMPLES // 2 if real else EXAMPLES

    @settings(
        max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(service_schema[path][method].as_strategy(generation_mode=mode), real_items(recommender, real), st.data())
    def check(case: schemathesis.Case, history: list[int] | None, data: st.DataObject) -> None:
        if history is not None:
            case.body["history"] = history
            if case.body.get("candidates") is not None:
                case.body["candidates"] = data.draw(real_items(recommender, True))
        # A schema-valid body may still name items the catalog lacks (422): the schema cannot say which exist.
        statuses[case.call_and_validate(excluded_checks=[positive_data_acceptance]).status_code] += 1

    check()
    assert statuses and max(statuses) < 500, statuses
    if real:
        assert statuses[200] >= examples // 2, statuses  # the model ranked most of them
