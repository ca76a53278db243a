"""docs/ltr.md's request bodies (the best-persona cosine as a feature of the cluster's own LTR) against the
engines' published specs, with the strict validator of tests/contract/. Skipped where the specs are absent."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

try:
    from contract.spec_validator import assert_valid, request_schema, require_specs
except ImportError:  # run without tests/ on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from contract.spec_validator import assert_valid, request_schema, require_specs

from p4r_search.clusters import opensearch
from p4r_search.query import PersonaQuery

DOC = Path(__file__).resolve().parents[1] / "docs" / "ltr.md"
MARK = re.compile(r"<!-- ltr-body: (\w+) (\w+) (\S+)( template)? -->\s*```json\n(.*?)```", re.DOTALL)
PLACEHOLDER = "{{#toJson}}profile{{/toJson}}"
VECTOR = [0.6, 0.0, 0.8]


def bodies() -> list[tuple[str, str, str, bool, dict]]:
    found = [(e, m, p, bool(t), json.loads(b)) for e, m, p, t, b in MARK.findall(DOC.read_text(encoding="utf-8"))]
    assert len(found) == 4, "docs/ltr.md has four marked request bodies"
    return found


@pytest.mark.parametrize("engine, method, path, template, body", bodies(), ids=lambda v: v if isinstance(v, str) else "")
def test_doc_body_is_valid_against_the_spec(engine, method, path, template, body):
    require_specs(engine)
    assert_valid(engine, request_schema(engine, method, path), body)


def rendered(template: str) -> dict:
    """The feature's mustache template with the profile in it, as the plugin renders it."""
    return json.loads(template.replace(PLACEHOLDER, json.dumps(VECTOR)))


def test_opensearch_feature_template_renders_to_p4rs_exact_query():
    (feature,) = next(b for e, _, _, t, b in bodies() if t)["featureset"]["features"]
    query = rendered(feature["template"])
    assert query == opensearch.exact_clause(PersonaQuery(vector=VECTOR), with_inner_hits=False)
    require_specs("opensearch")
    assert_valid("opensearch", request_schema("opensearch", "POST", "/{index}/_search"), {"query": query})


def test_elasticsearch_extractor_renders_to_a_valid_query():
    require_specs("elasticsearch")
    body = next(b for e, _, p, _, b in bodies() if e == "elasticsearch" and "trained_models" in p)
    (extractor,) = body["inference_config"]["learning_to_rank"]["feature_extractors"]
    placeholder = json.dumps(PLACEHOLDER.replace("profile", "profile.vector"))
    query = json.loads(json.dumps(extractor["query_extractor"]["query"]).replace(placeholder, json.dumps(VECTOR)))
    assert query["nested"]["query"]["script_score"]["script"]["params"]["query_value"] == VECTOR
    assert_valid("elasticsearch", request_schema("elasticsearch", "POST", "/{index}/_search"), {"query": query})
