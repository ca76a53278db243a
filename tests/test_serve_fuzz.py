"""schemathesis against the running `p4r serve` app: every request its OpenAPI document calls valid is
accepted, every invalid one refused with a documented status, every answer matches its documented schema,
and the API key is enforced. Bounded (few examples, derandomized) so that it runs in a few minutes.

The schema is the app's own document, taken from `create_app` at import (schemathesis's lazy
`from_fixture` loader fails under pytest 9: it sets `request.node._nodeid`, which pytest 9 no longer has);
the document does not depend on the index, and `test_the_served_document_is_the_one_fuzzed` holds the live
server's /openapi.json equal to it. Every case is sent to the live server over loopback."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation.modes import GenerationMode
from serve_support import serve

from p4r_search.serve import create_app

KEY = "fuzz-key-1"
DOCUMENT = create_app(None, api_key=KEY).openapi()  # the routes' document; the service is not touched
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(modes=list(GenerationMode))  # valid bodies and invalid ones


@pytest.fixture(scope="module")
def live(subset_index, subset, encoder):
    encoder.encode(["warm up"])  # the first encode loads the model; no request should wait for that
    with serve(subset_index, encoder, subset["interactions"], api_key=KEY) as server:
        yield server


def test_the_served_document_is_the_one_fuzzed(live):
    with live.client(headers={"X-API-Key": KEY}) as http:
        assert http.get("/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(max_examples=30, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_the_api_keeps_its_own_contract(case, live):
    case.call_and_validate(base_url=live.url, headers={"X-API-Key": KEY})
