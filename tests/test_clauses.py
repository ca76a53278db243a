"""`PersonaClauses`, the public builder, across every version band: the bodies a team would send (its own
`bool` with filters and aggregations, plus the persona clauses) validate against the engines' specs, and
follow the engines' semantics (read in their source; issue 13, docs/compatibility.md). Live behaviour:
tests/test_live_team_requests.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from contract.spec_validator import require_specs
from test_cluster_semantics import CLUSTERS, walk
from test_contract import check

from p4r_search import PersonaClauses
from p4r_search.clusters.capabilities import CapabilityError, supports
from p4r_search.clusters.model import Cluster, Distribution, Request
from p4r_search.errors import ChoiceError, ConfigError
from p4r_search.query import PersonaQuery

VECTOR = np.linspace(-1, 1, 8)
# the long forms: the spec validator does not model the shorthand `{"term": {"brand": "acme"}}` (the real
# engines take both: tests/test_live_team_requests.py runs the README's shorthand)
TEAM_FILTER = {"term": {"brand": {"value": "acme"}}}
TITLE = {"match": {"title": {"query": "dress"}}}
AGGS = {"brands": {"terms": {"field": "brand"}}}


def team_bodies(clauses: PersonaClauses) -> dict[str, dict]:
    """What a team sends: its own query and filters, with each persona clause merged in."""
    cluster, bodies = clauses.cluster, {}
    own = clauses.filters({"categories": ["Dresses"]}, exclude_ids=["seen-1"])
    if cluster.distribution is Distribution.OPENSEARCH or supports(cluster, "knn_query"):
        knn = clauses.knn(VECTOR, k=20, filter=[TEAM_FILTER], exclude_ids=["seen-1"])
        bodies["knn in bool"] = {"size": 10, "query": {"bool": {"must": [knn], "filter": [TEAM_FILTER, own]}},
                                 "aggregations": AGGS}
    if cluster.distribution is Distribution.ELASTICSEARCH:
        bodies["knn section"] = {"size": 10, "knn": clauses.knn_section(VECTOR, k=20, filter=[TEAM_FILTER]),
                                 "query": TITLE, "aggregations": AGGS}
    if supports(cluster, "painless"):
        bodies["exact"] = {"size": 10, "query": {"bool": {"must": [clauses.exact(VECTOR)], "filter": [own]}}}
        bodies["keywords and exact"] = {"query": {"bool": {"must": [clauses.exact(VECTOR)],
                                                           "should": [clauses.keywords("soft stretch")]}}}
        bodies["rescore"] = {"size": 10, "query": {"bool": {"must": [TITLE],
                                                            "filter": [TEAM_FILTER]}},
                             "rescore": clauses.rescore(VECTOR, window=50, query_weight=0.3, persona_weight=1.0)}
    return bodies


@pytest.mark.parametrize("cluster", CLUSTERS, ids=str)
def test_team_bodies_validate_and_follow_the_engines_rules(cluster):
    require_specs("elasticsearch", "opensearch")
    clauses = PersonaClauses(cluster)
    bodies = team_bodies(clauses)
    assert bodies, f"{cluster}: no clause could be built"
    engine = cluster.distribution.value
    for name, body in bodies.items():
        where = f"{cluster} {name}"
        check(engine, Request("POST", "/items/_search", body))
        text = json.dumps(body)
        names = [value.get("name") for _, key, value in walk(body) if key == "inner_hits"]
        assert len(names) == len(set(names)), f"{where}: two inner hits share a name: {names}"
        for path, key, value in walk(body):
            if key == "knn" and isinstance(value, dict):  # the team's filter is inside the kNN: a pre-filter
                assert "acme" in json.dumps(value) and "seen-1" in json.dumps(value) or name == "knn section", where
            if key == "rescore":
                assert "inner_hits" not in json.dumps(value), f"{where}: inner hits in a rescore query are dropped"
                assert value["query"]["rescore_query"]["nested"]["score_mode"] == "max", where
                assert value["window_size"] <= 10_000, where
        if cluster.distribution is Distribution.ELASTICSEARCH and name == "knn in bool":
            knn = body["query"]["bool"]["must"][0]["nested"]["query"]["knn"]
            assert ("k" in knn) is (cluster.version >= (8, 15, 0)), f"{where}: {knn}"
        assert "query_vector" in text or "query_value" in text or "vector" in text, where


@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
def test_index_bodies_validate(engine):
    require_specs("elasticsearch", "opensearch")
    clauses = PersonaClauses.for_version(engine, "8.19.0" if engine == "elasticsearch" else "2.19.1")
    check(engine, Request("PUT", "/items", clauses.index_body(384)))
    check(engine, Request("PUT", "/items/_mapping", clauses.mapping(384)))


def test_what_a_cluster_cannot_do_is_refused_with_what_to_use_instead():
    es_811 = PersonaClauses(Cluster(Distribution.ELASTICSEARCH, (8, 11, 0), "basic"))
    with pytest.raises(CapabilityError, match="knn query .* needs 8.12.*knn_section"):
        es_811.knn(VECTOR)
    assert es_811.knn_section(VECTOR, k=5)["k"] == 5
    no_painless = PersonaClauses(Cluster(Distribution.ELASTICSEARCH, (8, 19, 0), "basic", frozenset({"x-pack"})))
    for build in (no_painless.exact, no_painless.rescore):
        with pytest.raises(CapabilityError, match="no lang-painless module"):
            build(VECTOR)
    with pytest.raises(CapabilityError, match="Elasticsearch's"):
        PersonaClauses.for_version("opensearch", "3.5.0").knn_section(VECTOR)
    with pytest.raises(ConfigError, match="window must be in"):
        PersonaClauses.for_version("opensearch", "3.5.0").rescore(VECTOR, window=10_001)
    with pytest.raises(ChoiceError, match="filter field"):
        PersonaClauses.for_version("opensearch", "3.5.0").filters({"colour": ["red"]})
    with pytest.raises(ChoiceError, match="engine"):
        PersonaClauses.for_version("solr", "9.0.0")


def test_a_persona_query_carries_its_filters_and_size_into_the_clause():
    query = PersonaQuery(vector=VECTOR, k=7, num_candidates=30, filters={"categories": ("Knits",)},
                         exclude_ids=frozenset({"1"}))
    knn = PersonaClauses.for_version("opensearch", "2.19.1").knn(query)["nested"]["query"]["knn"]["personas.vector"]
    assert knn["k"] == 30 and "Knits" in json.dumps(knn["filter"]) and '"1"' in json.dumps(knn["filter"])


def test_hit_reads_the_cosine_and_persona_of_either_clause():
    clauses = PersonaClauses.for_version("opensearch", "3.5.0")
    persona = {"persona_id": "p1", "name": "Petite Fans", "description": "d", "rationale": "r", "support": 0.5,
               "evidence": [{"review_id": "r1", "text": "fits"}]}
    inner = {"hits": {"hits": [{"_score": 0.9, "_source": persona}]}}
    raw = {"_id": "1", "_score": 3.2, "_source": {"title": "Dress"}, "inner_hits": {"p4r-knn": inner}}
    hit = clauses.hit(raw)
    assert hit.scores == {"cosine": pytest.approx(0.8), "request": 3.2} and hit.persona.name == "Petite Fans"
    raw["inner_hits"]["p4r-exact"] = {"hits": {"hits": [{"_score": 1.8, "_source": persona}]}}
    assert clauses.hit(raw).score == pytest.approx(0.8) and clauses.hit(raw).evidence[0].review_id == "r1"
    with pytest.raises(ConfigError, match="no persona inner hit"):
        clauses.hit({"_id": "2", "_score": 1.0})
