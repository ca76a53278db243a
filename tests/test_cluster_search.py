"""How ClusterBackend.search combines a plan's responses into hits.

The cluster is a scripted stand-in (no Elasticsearch or OpenSearch server can run here): it answers each
request by its shape, as a cluster holding three items would.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from p4r_search.backends.cluster import ClusterBackend
from p4r_search.clusters.capabilities import CapabilityError
from p4r_search.clusters.model import Cluster, Distribution, Request
from p4r_search.query import PersonaQuery

COSINE = {"A": 0.2, "B": 0.9, "C": 0.5}  # exact cosine of each item's best persona
BM25 = {"A": 7.0, "C": 1.0}


def persona(item):
    return {"persona_id": f"{item}-p0", "name": "Soft Fans", "description": "d", "rationale": "r", "support": 1.0,
            "evidence": [{"review_id": f"{item}-r1", "text": "so soft"}]}


# a quantised persona-vector mapping on either engine (int8 on Elasticsearch, byte on OpenSearch): its kNN
# scores are approximate, as ScriptedCluster's are, so every plan scores exactly with the script
QUANTISED = {"type": "dense_vector", "index_options": {"type": "int8_hnsw"}, "data_type": "byte"}


class ScriptedCluster:
    def __init__(self):
        self.sent: list[Request] = []

    def send(self, request: Request):
        self.sent.append(request)
        if request.path.endswith("/_mapping"):
            return {"items": {"mappings": {"properties": {"personas": {"properties": {"vector": QUANTISED}}}}}}
        body = json.dumps(request.body)
        ids = [i for i in COSINE if f'"{i}"' in body.split('"ids"', 1)[-1]] if '"ids"' in body else list(COSINE)
        if "script_score" in body:  # exact: 1 + cos, with the best persona
            hits = [{"_id": i, "_score": 1 + COSINE[i], "_source": {"title": f"T{i}"},
                     "inner_hits": {"personas": {"hits": {"hits": [{"_source": persona(i)}]}}}} for i in ids]
        elif '"match"' in body and "hybrid" not in body and "retriever" not in body:  # BM25 only
            hits = [{"_id": i, "_score": BM25[i]} for i in ids if i in BM25]
        elif "hybrid" in body:  # server-side fusion: an arbitrary fused order
            hits = [{"_id": i, "_score": s} for i, s in (("A", 0.8), ("C", 0.6), ("B", 0.4))]
        else:  # knn, (1 + cos) / 2, in a slightly wrong order, as quantised HNSW may give
            hits = [{"_id": i, "_score": (1 + COSINE[i]) / 2 + (0.3 if i == "C" else 0)} for i in ids]
        hits.sort(key=lambda h: -h["_score"])
        return {"hits": {"hits": hits}, "acknowledged": True}

    def bulk(self, actions):
        raise AssertionError("not used")


def search(cluster, **kw):
    stand_in = ScriptedCluster()
    backend = ClusterBackend(stand_in, cluster, "items")
    return backend.search(PersonaQuery(vector=np.ones(4), **kw)), stand_in


def test_knn_proposals_are_rescored_exactly_and_cut_to_k():
    hits, _ = search(Cluster(Distribution.ELASTICSEARCH, (8, 17, 0), "basic"), k=2, num_candidates=3)
    assert [h.item_id for h in hits] == ["B", "C"]
    assert [h.score for h in hits] == pytest.approx([0.9, 0.5])
    assert hits[0].persona.persona_id == "B-p0" and hits[0].evidence[0].text == "so soft"


def test_server_fused_hybrid_still_reports_the_bm25_component():
    hits, stand_in = search(Cluster(Distribution.OPENSEARCH, (2, 19, 0)), k=3, mode="hybrid", text="soft")
    assert [h.item_id for h in hits] == ["A", "C", "B"]  # the fused order
    assert {h.item_id: h.scores["bm25"] for h in hits} == {"A": 7.0, "C": 1.0, "B": 0.0}
    assert all(set(h.scores) == {"cosine", "bm25", "fused"} for h in hits)
    assert hits[0].scores["fused"] == pytest.approx(0.8 * 1.0)  # weighted mean x sum of weights (0.5 + 0.5)
    assert stand_in.sent[0].path.startswith("/_search/pipeline/")


def test_client_side_hybrid_matches_the_embedded_fusion():
    from p4r_search import fusion

    hits, _ = search(Cluster(Distribution.ELASTICSEARCH, (9, 1, 0), "basic"), k=3, mode="hybrid", text="soft")
    vector = {i: COSINE[i] for i in COSINE}
    expected = fusion.linear([vector, BM25], [0.5, 0.5])
    assert [h.item_id for h in hits] == fusion.ranked(expected)
    assert {h.item_id: h.scores["fused"] for h in hits} == pytest.approx(expected)


class FloatMappedCluster(ScriptedCluster):
    """As ScriptedCluster, with p4r's own (float hnsw) mapping: its kNN scores are exact (1 + cos) / 2, best
    first, each with its best persona as the inner hit, as the engines answer (tests/test_live_clusters.py)."""

    def __init__(self, documents: int = 12, stats_status: int | None = None):
        super().__init__()
        self.documents, self.stats_status = documents, stats_status

    def send(self, request: Request):
        if request.path.endswith("/_stats/docs"):
            self.sent.append(request)
            if self.stats_status:  # as the clients raise it: an error carrying the HTTP status
                raise type("ApiError", (Exception,), {"status_code": self.stats_status})("security_exception")
            return {"_all": {"primaries": {"docs": {"count": self.documents}}}}
        if request.path.endswith("/_mapping"):
            self.sent.append(request)
            from p4r_search.clusters import elasticsearch

            return {"items": elasticsearch.create_index("items", 4).body}
        if '"knn"' in json.dumps(request.body):
            self.sent.append(request)
            body = json.dumps(request.body)
            ids = [i for i in COSINE if f'"{i}"' in body.split('"ids"', 1)[-1]] if '"ids"' in body else list(COSINE)
            hits = [{"_id": i, "_score": (1 + COSINE[i]) / 2, "_source": {"title": f"T{i}"},
                     "inner_hits": {"personas": {"hits": {"hits": [{"_source": persona(i)}]}}}}
                    for i in sorted(ids, key=lambda i: -COSINE[i])]
            return {"hits": {"hits": hits[: request.body["size"]]}}
        return super().send(request)


def test_knn_on_a_float_mapping_is_one_request_after_the_mapping_is_read_once():
    stand_in = FloatMappedCluster()
    backend = ClusterBackend(stand_in, Cluster(Distribution.ELASTICSEARCH, (8, 19, 0), "basic"), "items")
    query = PersonaQuery(vector=np.ones(4), k=2, num_candidates=3, mode="knn")
    hits = backend.search(query)
    assert [h.item_id for h in hits] == ["B", "C"] and [h.score for h in hits] == pytest.approx([0.9, 0.5])
    assert hits[0].scores == {"cosine": pytest.approx(0.9)} and hits[0].persona.persona_id == "B-p0"
    assert [r.path for r in stand_in.sent] == ["/items/_mapping", "/items/_search"]
    backend.search(query)
    assert [r.path for r in stand_in.sent][2:] == ["/items/_search"]  # one request per recommendation
    backend.refresh_metadata()
    backend.search(query)
    assert [r.path for r in stand_in.sent][3:] == ["/items/_mapping", "/items/_search"]


def test_hybrid_does_not_read_the_mapping_nor_the_document_count():
    stand_in = FloatMappedCluster()
    backend = ClusterBackend(stand_in, Cluster(Distribution.ELASTICSEARCH, (8, 19, 0), "basic"), "items")
    backend.search(PersonaQuery(vector=np.ones(4), k=2, mode="hybrid", text="soft"))
    assert {r.path for r in stand_in.sent} == {"/items/_search"}


ES_WITHOUT_PAINLESS = Cluster(Distribution.ELASTICSEARCH, (8, 19, 0), "basic", frozenset({"x-pack-core"}))


def test_es_exact_on_a_small_index_is_one_knn_request_after_mapping_and_count_are_read_once():
    stand_in = FloatMappedCluster(documents=12)
    backend = ClusterBackend(stand_in, ES_WITHOUT_PAINLESS, "items")
    query = PersonaQuery(vector=np.ones(4), k=2, mode="exact")
    hits = backend.search(query)
    assert [h.item_id for h in hits] == ["B", "C"] and [h.score for h in hits] == pytest.approx([0.9, 0.5])
    assert hits[0].persona.persona_id == "B-p0"
    assert [r.path for r in stand_in.sent] == ["/items/_mapping", "/items/_stats/docs", "/items/_search"]
    backend.search(query)
    assert [r.path for r in stand_in.sent][3:] == ["/items/_search"]
    candidates = backend.search(PersonaQuery(vector=np.ones(4), k=2, mode="knn", candidate_ids=("A", "C")))
    assert [h.item_id for h in candidates] == ["C", "A"] and [r.path for r in stand_in.sent][4:] == ["/items/_search"]


@pytest.mark.parametrize("documents, status", [(10_001, None), (12, 403)], ids=["large index", "no monitor privilege"])
def test_es_exact_needs_painless_where_lucene_would_not_scan_or_the_count_is_refused(documents, status):
    stand_in = FloatMappedCluster(documents=documents, stats_status=status)
    query = PersonaQuery(vector=np.ones(4), k=2, mode="exact")
    with pytest.raises(CapabilityError, match="no lang-painless module"):
        ClusterBackend(stand_in, ES_WITHOUT_PAINLESS, "items").search(query)
    hits = ClusterBackend(stand_in, Cluster(Distribution.ELASTICSEARCH, (8, 19, 0), "basic"), "items").search(query)
    assert [h.item_id for h in hits] == ["B", "C"] and "script_score" in json.dumps(stand_in.sent[-1].body)
