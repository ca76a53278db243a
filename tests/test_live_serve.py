"""`p4r serve` over a real cluster index (OpenSearch 3.x and 2.x, Elasticsearch 8.x on loopback, or the
clusters named in the environment): the same answers as the service over the embedded index of the same
personas. Where the cluster cannot run a mode (hybrid and rescore need painless), the service says so with 501."""

from __future__ import annotations

import pytest
from live_support import SCORE_TOLERANCE, painless
from serve_support import LiveServer, make_service, seeded_store

from p4r_search.serve import ServedIndex, Service, SharedEncoder, create_app

USER = "demo-petite-dresses"


@pytest.fixture(scope="module")
def served(live, subset_index, subset, encoder):
    users = seeded_store(subset["interactions"])
    cluster = Service(ServedIndex.cluster(live.backend, live.where), SharedEncoder(encoder), users, engine="cluster")
    embedded = make_service(subset_index, encoder, subset["interactions"])
    with LiveServer(create_app(cluster)) as on_cluster, LiveServer(create_app(embedded)) as on_embedded, \
            on_cluster.client() as theirs, on_embedded.client() as ours:
        yield theirs, ours


@pytest.mark.parametrize("body", [
    {"user_id": USER, "k": 5, "mode": "exact"},
    {"user_id": USER, "k": 5},
    {"text": "jeans that stretch", "k": 5, "filters": {"categories": ["Jeans"]}},
])
def test_recommend_on_the_cluster_equals_the_embedded_service(live, served, body):
    theirs, ours = served
    answer = theirs.post("/v1/recommend", json=body)
    assert answer.status_code == 200, answer.text
    want, got = ours.post("/v1/recommend", json=body).json()["hits"], answer.json()["hits"]
    assert [h["item_id"] for h in got] == [h["item_id"] for h in want]
    assert all(abs(a["score"] - b["score"]) <= SCORE_TOLERANCE for a, b in zip(got, want))
    assert [h["persona"]["persona_id"] for h in got] == [h["persona"]["persona_id"] for h in want]


def test_a_mode_the_cluster_cannot_run_is_501_with_why(live, served):
    """Keywords fused into the ranking score with a script: refused on Elasticsearch's test zip, as said."""
    theirs, ours = served
    body = {"user_id": USER, "k": 5, "mode": "rescore", "keywords": "dress"}
    answer = theirs.post("/v1/recommend", json=body)
    if painless(live):
        assert answer.status_code == 200 and ours.post("/v1/recommend", json=body).status_code == 200, answer.text
    else:
        assert answer.status_code == 501 and "no lang-painless module" in answer.json()["detail"], answer.text


def test_items_index_info_and_explain_on_the_cluster(live, served, subset_index):
    theirs, ours = served
    item = "1080"
    assert theirs.get(f"/v1/items/{item}").json()["personas"] == ours.get(f"/v1/items/{item}").json()["personas"]
    assert theirs.get("/v1/items/gone").status_code == 404
    info = theirs.get("/v1/index").json()
    assert info["items"] == ours.get("/v1/index").json()["items"] and info["generation"] is None
    body = {"user_id": USER, "item_id": "815"}
    answer = theirs.post("/v1/explain", json=body)  # no painless on ES: the candidate and rank scans are kNN
    assert answer.status_code == 200, answer.text
    mine = ours.post("/v1/explain", json=body).json()
    assert [p["persona"]["persona_id"] for p in answer.json()["persona_scores"]] == \
           [p["persona"]["persona_id"] for p in mine["persona_scores"]]
