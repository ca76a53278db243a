"""The dialects as pure functions: one PersonaQuery → request bodies per engine, version and licence."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from p4r_search.clusters import dsl
from p4r_search.clusters import elasticsearch as es
from p4r_search.clusters import opensearch as os_
from p4r_search.clusters.capabilities import CapabilityError, scores_float_vectors, supports, vector_score_to_cosine
from p4r_search.clusters.dialects import dialect_for
from p4r_search.clusters.model import Cluster, Distribution, Request
from p4r_search.clusters.plan import choose
from p4r_search.query import PersonaQuery

ROOT = Path(__file__).resolve().parents[1]
V = np.linspace(-1, 1, 384)
ES_VERSIONS = [((8, 11, 0), "basic"), ((8, 13, 0), "basic"), ((8, 17, 0), "enterprise"), ((8, 18, 0), "trial"),
               ((9, 1, 0), "basic"), ((9, 1, 0), "enterprise")]
OS_VERSIONS = [(2, 12, 0), (2, 18, 0), (2, 19, 0), (3, 1, 0)]
CLUSTERS = [Cluster(Distribution.ELASTICSEARCH, v, lic) for v, lic in ES_VERSIONS] + [
    Cluster(Distribution.OPENSEARCH, v) for v in OS_VERSIONS
]
MODES = [("knn", None), ("exact", None), ("hybrid", "linear"), ("hybrid", "rrf"), ("rescore", None)]
EXTRAS = [{}, {"filters": {"categories": ("Dresses",), "attributes.class": ("Knits",)}, "exclude_ids": frozenset({"9"})},
          {"candidate_ids": ("1", "2", "3")}]


def plan_for(cluster: Cluster, query: PersonaQuery):
    if cluster.distribution is Distribution.ELASTICSEARCH:
        return es.search_plan("items", cluster, query)
    return os_.search_plan("items", cluster, query)


def make_query(mode, fusion, extra, text="petite dress"):
    kw = {"mode": mode, **extra}
    if mode == "hybrid":
        kw.update(text=text, fusion=fusion)
    if mode == "rescore":
        kw.update(text=text)
    return PersonaQuery(vector=V, k=5, num_candidates=50, **kw)


def matrix():
    for cluster, (mode, fusion), extra in itertools.product(CLUSTERS, MODES, EXTRAS):
        if mode == "rescore" and "candidate_ids" in extra:
            continue  # refused by PersonaQuery (test_query_fusion_profile)
        yield pytest.param(cluster, mode, fusion, extra, id=f"{cluster}-{mode}-{fusion}-{sorted(extra)}")


def walk(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield path + (key,), value
            yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for value in node:
            yield from walk(value, path)


@pytest.mark.parametrize("cluster, mode, fusion, extra", list(matrix()))
def test_every_combination_plans_or_refuses_with_a_reason(cluster, mode, fusion, extra):
    try:
        plan = plan_for(cluster, make_query(mode, fusion, extra))
    except CapabilityError as exc:
        assert "cannot do this" in str(exc) and ";" in str(exc)
        assert fusion == "rrf" and cluster.distribution is Distribution.OPENSEARCH and cluster.version < (2, 19, 0)
        return
    requests = plan.requests(["1", "2"])
    assert all(isinstance(r, Request) and r.path.startswith("/") for r in requests)
    bodies = json.dumps([r.body for r in requests])
    if extra.get("filters"):
        assert '"terms": {"categories": ["Dresses"]}' in bodies and '"ids": {"values": ["9"]}' in bodies
    if extra.get("candidate_ids"):
        assert '"ids": {"values": ["1", "2", "3"]}' in bodies
        native = mode in ("knn", "exact")  # both engines (OpenSearch on lucene) score candidates by the kNN itself
        assert ('"knn"' in json.dumps(plan.proposals[0].request.body)) is native
    if mode == "exact":
        assert plan.final_is_exact and len(plan.proposals) == 1
    if mode in ("knn", "exact") and extra.get("candidate_ids"):  # one request scores the ids exactly
        assert plan.final_is_exact and len(requests) == 1 and '"script_score"' not in bodies
    if mode == "knn" and not extra.get("candidate_ids"):  # one request: the engine's float kNN is the answer
        assert plan.final_is_exact and plan.rescore is None and len(plan.requests(["1", "2"])) == 1
        assert "script_score" not in bodies and plan.proposals[0].request.body["size"] == 5
    if mode == "rescore":  # one request: BM25 with the filters, the persona script in its rescore section
        body = plan.proposals[0].request.body
        rescore = body["rescore"]["query"]
        assert body["rescore"]["window_size"] == 50 and body["size"] == 5
        assert rescore["rescore_query"]["nested"]["score_mode"] == "max" and rescore["score_mode"] == "total"
        assert "inner_hits" not in json.dumps(rescore) and "match" in json.dumps(body["query"])
        if extra.get("filters"):
            assert '"Dresses"' in json.dumps(body["query"]) and '"Dresses"' not in json.dumps(rescore)


def test_es_knn_is_top_level_on_the_nested_vector_with_inner_hits():
    plan = es.search_plan("items", Cluster(Distribution.ELASTICSEARCH, (8, 11, 0), "basic"), make_query("knn", None, {}))
    body = plan.proposals[0].request.body
    knn = body["knn"]
    assert knn["field"] == "personas.vector" and knn["k"] == 50 and knn["num_candidates"] >= knn["k"]
    assert knn["inner_hits"]["size"] == 1 and "personas.vector" not in json.dumps(knn["inner_hits"])
    assert body["size"] == 5 and body["_source"] == ["title"]  # the k best of 50 found; no vectors come back


def test_knn_on_quantised_vectors_is_rescored_exactly_in_a_second_request():
    for cluster in (Cluster(Distribution.ELASTICSEARCH, (8, 19, 0)), Cluster(Distribution.OPENSEARCH, (3, 1, 0))):
        dialect = es if cluster.distribution is Distribution.ELASTICSEARCH else os_
        plan = dialect.search_plan("items", cluster, make_query("knn", None, {}), float_vectors=False)
        assert not plan.final_is_exact and len(plan.requests(["1"])) == 2
        assert "cosineSimilarity" in json.dumps(plan.requests(["1"])[1].body)


@pytest.mark.parametrize("distribution, version, mapping, is_float", [
    (Distribution.ELASTICSEARCH, (8, 19, 0), es.vector_mapping(384), True),
    (Distribution.ELASTICSEARCH, (8, 19, 0), {**es.vector_mapping(384), "index_options": {"type": "int8_hnsw"}}, False),
    (Distribution.ELASTICSEARCH, (9, 1, 0), {**es.vector_mapping(384), "index_options": {"type": "bbq_hnsw"}}, False),
    (Distribution.ELASTICSEARCH, (8, 19, 0), {"type": "dense_vector", "dims": 384}, False),  # 8.14+: int8_hnsw
    (Distribution.ELASTICSEARCH, (8, 13, 0), {"type": "dense_vector", "dims": 384}, True),
    (Distribution.ELASTICSEARCH, (8, 19, 0), {**es.vector_mapping(384), "index_options": {"type": "flat"}}, True),
    (Distribution.OPENSEARCH, (3, 1, 0), os_.vector_mapping(384), True),
    (Distribution.OPENSEARCH, (3, 1, 0), os_.vector_mapping(384, "faiss"), True),
    (Distribution.OPENSEARCH, (3, 1, 0), {**os_.vector_mapping(384), "compression_level": "32x"}, False),
    (Distribution.OPENSEARCH, (3, 1, 0), {**os_.vector_mapping(384), "mode": "on_disk"}, False),
    (Distribution.OPENSEARCH, (3, 1, 0), {**os_.vector_mapping(384), "data_type": "byte"}, False),
    (Distribution.OPENSEARCH, (2, 19, 0), {"type": "knn_vector", "dimension": 384, "method": {
        "name": "hnsw", "engine": "faiss", "parameters": {"encoder": {"name": "sq"}}}}, False),
])
def test_which_vector_mappings_score_float_cosines(distribution, version, mapping, is_float):
    assert scores_float_vectors(Cluster(distribution, version), mapping) is is_float


ES_8_19 = Cluster(Distribution.ELASTICSEARCH, (8, 19, 0), "basic", frozenset({"x-pack-core"}))  # no painless


def test_es_scores_candidates_exactly_through_the_knn_without_a_script():
    query = make_query("exact", None, {"candidate_ids": ("1", "2", "3"), "exclude_ids": frozenset({"2"})})
    plan = es.search_plan("items", ES_8_19, query)
    body = plan.proposals[0].request.body
    knn = body["knn"]
    # num_candidates at its cap: Lucene then scores every persona the ids filter matches (dsl.NATIVE_EXACT_*)
    assert knn["num_candidates"] == 10_000 and knn["k"] == 5 and body["size"] == 5
    assert {"ids": {"values": ["1", "2", "3"]}} in knn["filter"] and {"bool": {"must_not": [{"ids": {"values": ["2"]}}]}} in knn["filter"]
    assert knn["inner_hits"]["size"] == 1 and body["_source"] == ["title"]
    assert plan.final_is_exact and len(plan.requests()) == 1 and "script_score" not in json.dumps(body)
    assert plan.proposals[0].convert(0.9) == pytest.approx(0.8)  # (1 + cos) / 2 back to the cosine


@pytest.mark.parametrize("version", OS_VERSIONS)
def test_os_scores_candidates_exactly_through_the_lucene_knn_and_faiss_keeps_the_script(version):
    cluster = Cluster(Distribution.OPENSEARCH, version)
    query = make_query("exact", None, {"candidate_ids": ("1", "2", "3")})
    plan = os_.search_plan("items", cluster, query)
    body = plan.proposals[0].request.body
    knn = body["query"]["bool"]["must"][0]["nested"]["query"]["knn"]["personas.vector"]
    # k at its cap, so Lucene's k (max(k, ef_search)) covers every persona the ids filter matches
    assert knn["k"] == 10_000 and knn["filter"] == {"bool": {"filter": [{"ids": {"values": ["1", "2", "3"]}}]}}
    assert body["size"] == 5 and plan.final_is_exact and "script_score" not in json.dumps(body)
    faiss = os_.search_plan("items", cluster, query, engine="faiss")
    assert "cosineSimilarity" in json.dumps(faiss.proposals[0].request.body)
    scan = os_.search_plan("items", cluster, make_query("exact", None, {}), index_documents=50)
    assert "cosineSimilarity" in json.dumps(scan.proposals[0].request.body)  # a whole-index scan stays scripted


def test_es_candidates_beyond_what_lucene_scores_exactly_need_painless():
    many = tuple(str(n) for n in range(dsl.NATIVE_EXACT_ITEMS + 1))
    with pytest.raises(CapabilityError, match="painless"):
        es.search_plan("items", ES_8_19, make_query("knn", None, {"candidate_ids": many}))
    plan = es.search_plan("items", Cluster(Distribution.ELASTICSEARCH, (8, 19, 0)), make_query("knn", None, {"candidate_ids": many}))
    assert "cosineSimilarity" in json.dumps(plan.proposals[0].request.body)


@pytest.mark.parametrize("documents, native", [(50, True), (10_000, True), (10_001, False), (None, False)])
def test_es_exact_mode_is_the_knn_itself_on_an_index_lucene_scores_whole(documents, native):
    """A whole-index exact scan through the kNN only where every segment has at most num_candidates' cap of
    documents (the index's count, nested ones included); else painless, refused on a node without it."""
    query = make_query("exact", None, {"filters": {"categories": ("Dresses",)}})
    if not native:
        with pytest.raises(CapabilityError, match="painless"):
            es.search_plan("items", ES_8_19, query, index_documents=documents)
        return
    body = es.search_plan("items", ES_8_19, query, index_documents=documents).proposals[0].request.body
    assert body["knn"]["filter"] == [{"terms": {"categories": ["Dresses"]}}] and body["knn"]["num_candidates"] == 10_000
    unfiltered = es.search_plan("items", ES_8_19, make_query("exact", None, {}), index_documents=documents)
    # without a filter Lucene would only walk the graph: match_all makes it count, and scan
    assert unfiltered.proposals[0].request.body["knn"]["filter"] == [{"match_all": {}}]


def test_es_exact_on_quantised_vectors_keeps_the_script():
    query = make_query("exact", None, {"candidate_ids": ("1",)})
    plan = es.search_plan("items", Cluster(Distribution.ELASTICSEARCH, (8, 19, 0)), query, float_vectors=False,
                          index_documents=10)
    assert "cosineSimilarity" in json.dumps(plan.proposals[0].request.body)


def test_es_exact_is_nested_max_around_a_constant_script():
    body = es.search_plan("items", Cluster(Distribution.ELASTICSEARCH, (8, 11, 0)), make_query("exact", None, {})).proposals[0].request.body
    nested = body["query"]["bool"]["must"][0]["nested"]
    assert nested["score_mode"] == "max" and nested["path"] == "personas"
    script = nested["query"]["script_score"]["script"]
    assert script["source"] == "cosineSimilarity(params.query_value, 'personas.vector') + 1.0"
    assert len(script["params"]["query_value"]) == 384


def test_es_hybrid_fusion_follows_version_and_licence():
    def names(version, licence, fusion):
        plan = es.search_plan("items", Cluster(Distribution.ELASTICSEARCH, version, licence), make_query("hybrid", fusion, {}))
        return [p.name for p in plan.proposals], json.dumps(plan.proposals[0].request.body)

    assert names((9, 1, 0), "basic", "linear")[0] == ["vector", "bm25"]  # Basic: client-side
    assert names((8, 17, 0), "enterprise", "linear")[0] == ["vector", "bm25"]  # linear retriever needs 8.18
    assert names((8, 18, 2), "trial", "linear")[0] == ["vector", "bm25"]  # minmax bug (#128689) until 8.18.3
    assert names((9, 0, 5), "trial", "linear")[0] == ["vector", "bm25"]  # and on 9.0.x (no backport listed)
    fused, body = names((8, 18, 3), "trial", "linear")
    assert fused == ["fused"] and '"linear"' in body and '"normalizer": "minmax"' in body
    fused, body = names((8, 16, 0), "enterprise", "rrf")
    assert fused == ["fused"] and '"rrf"' in body
    assert names((8, 16, 0), "basic", "rrf")[0] == ["vector", "bm25"]  # RRF on Basic: client-side RRF


def test_bm25_and_vector_are_separate_nested_clauses():
    plan = es.search_plan("items", Cluster(Distribution.ELASTICSEARCH, (9, 1, 0), "basic"), make_query("hybrid", "linear", {}))
    bm25 = plan.proposals[1].request.body["query"]["bool"]["must"][0]["nested"]
    assert bm25["query"] == {"match": {"personas.text": {"query": "petite dress"}}}


def test_opensearch_knn_nested_and_expand_nested_docs_from_2_19():
    for version, expand in (((2, 18, 0), False), ((2, 19, 0), True), ((3, 1, 0), True)):
        plan = os_.search_plan("items", Cluster(Distribution.OPENSEARCH, version), make_query("knn", None, {}))
        nested = plan.proposals[0].request.body["query"]["bool"]["must"][0]["nested"]
        assert nested["score_mode"] == "max" and "inner_hits" in nested
        knn = nested["query"]["knn"]["personas.vector"]
        assert ("expand_nested_docs" in knn) is expand


@pytest.mark.parametrize("version, ef", [((2, 12, 0), None), ((2, 16, 0), 100), ((3, 5, 0), 100)])
def test_opensearch_knn_explores_as_widely_as_elasticsearch(version, ef):
    query = make_query("knn", None, {})
    nested = os_.search_plan("items", Cluster(Distribution.OPENSEARCH, version), query).proposals[0].request.body
    knn = nested["query"]["bool"]["must"][0]["nested"]["query"]["knn"]["personas.vector"]
    assert knn.get("method_parameters", {}).get("ef_search") == ef
    es_knn = es.search_plan("items", Cluster(Distribution.ELASTICSEARCH, (8, 19, 0)), query).proposals[0].request.body["knn"]
    assert ef is None or es_knn["num_candidates"] == ef


def test_opensearch_hybrid_uses_a_search_pipeline():
    cluster = Cluster(Distribution.OPENSEARCH, (2, 19, 0))
    linear = os_.search_plan("items", cluster, make_query("hybrid", "linear", {}))
    [setup] = linear.setup
    name = linear.proposals[0].request.params["search_pipeline"]
    assert setup.method == "PUT" and setup.path == f"/_search/pipeline/{name}"
    assert "normalization-processor" in setup.body["phase_results_processors"][0]
    assert list(linear.proposals[0].request.body["query"]) == ["hybrid"]
    rrf = os_.search_plan("items", cluster, make_query("hybrid", "rrf", {}))
    assert rrf.setup[0].body["phase_results_processors"][0]["score-ranker-processor"]["combination"]["technique"] == "rrf"



@pytest.mark.parametrize("cluster", [
    Cluster(Distribution.OPENSEARCH, (2, 18, 0)),  # RRF's processor arrived in 2.19
    Cluster(Distribution.OPENSEARCH, (3, 5, 0), plugins=frozenset({"opensearch-knn", "lang-painless"})),  # no neural-search
])
@pytest.mark.parametrize("fusion", ["linear", "rrf"])
def test_opensearch_hybrid_fuses_client_side_where_no_processor_can(cluster, fusion):
    if fusion == "linear" and cluster.plugins is None:
        return  # 2.18 with the plugin: linear stays server-side (tested above)
    plan = os_.search_plan("items", cluster, make_query("hybrid", fusion, {}))
    assert not plan.setup and [p.name for p in plan.proposals] == ["vector", "bm25"]
    assert "search_pipeline" not in plan.proposals[0].request.params


def test_a_cluster_without_painless_or_knn_is_refused_with_why():
    bare_es = Cluster(Distribution.ELASTICSEARCH, (8, 19, 0), "basic", frozenset({"x-pack-core", "transport-netty4"}))
    for mode in ("exact", "hybrid"):
        with pytest.raises(CapabilityError, match="no lang-painless module"):
            es.search_plan("items", bare_es, make_query(mode, "linear", {}))
    assert len(es.search_plan("items", bare_es, make_query("knn", None, {})).requests()) == 1  # knn needs no script
    candidates = make_query("knn", None, {"candidate_ids": ("1",)})
    assert len(es.search_plan("items", bare_es, candidates).requests()) == 1  # nor do candidates, on float vectors
    with pytest.raises(CapabilityError, match="no lang-painless module"):  # quantised vectors are rescored by one
        es.search_plan("items", bare_es, make_query("knn", None, {}), float_vectors=False)
    with pytest.raises(CapabilityError, match="no lang-painless module"):
        es.search_plan("items", bare_es, candidates, float_vectors=False)
    no_knn = Cluster(Distribution.OPENSEARCH, (2, 19, 0), plugins=frozenset({"lang-painless"}))
    with pytest.raises(CapabilityError, match="k-NN plugin.*install opensearch-knn"):
        os_.search_plan("items", no_knn, make_query("knn", None, {}))


def test_capability_errors_say_why_and_what_instead():
    with pytest.raises(CapabilityError, match=r"8\.10\.0.*needs Elasticsearch 8\.11.*upgrade"):
        es.search_plan("items", Cluster(Distribution.ELASTICSEARCH, (8, 10, 0), "basic"), make_query("knn", None, {}))
    assert not supports(Cluster(Distribution.ELASTICSEARCH, (9, 0, 0), "basic"), "rrf_retriever")
    assert supports(Cluster(Distribution.ELASTICSEARCH, (9, 0, 0), "trial"), "rrf_retriever")


@pytest.mark.parametrize("exact, raw, cosine", [
    (False, 0.9, 0.8),  # Elasticsearch cosine, OpenSearch cosinesimil: (1+cos)/2 (run on 8.19.0, 2.19.1, 3.5.0)
    (True, 1.8, 0.8),  # painless cosineSimilarity + 1.0
])
def test_scores_convert_back_to_cosine(exact, raw, cosine):
    assert vector_score_to_cosine(raw, exact=exact) == pytest.approx(cosine)


@pytest.mark.parametrize("version, refused", [((2, 18, 0), True), ((2, 19, 0), False)])
def test_faiss_cosine_is_refused_before_2_19_before_any_request(version, refused):
    cluster = Cluster(Distribution.OPENSEARCH, version)
    if refused:
        with pytest.raises(CapabilityError, match="cosinesimil only from OpenSearch 2.19.*--os-engine lucene"):
            dialect_for(cluster, "faiss")
    else:
        mapping = dialect_for(cluster, "faiss").create_index("items", 8).body
        assert mapping["mappings"]["properties"]["personas"]["properties"]["vector"]["method"]["engine"] == "faiss"


def test_client_side_fusion_matches_the_embedded_fusion():
    query = make_query("hybrid", "linear", {})
    chosen, parts = choose(query, {"vector": {"a": 0.9, "b": 0.5}, "bm25": {"b": 10.0, "c": 2.0}})
    assert chosen == ["a", "b", "c"] and parts["a"] == {"bm25": 0.0, "fused": 0.5}


INJECTION = 'x") OR 1==1; params.v[0] = 9; doc[\'a\'] \\" {"query_string": {"query": "*"}} */ <script> ^5 ~ AND NOT'


@pytest.mark.parametrize("cluster", CLUSTERS, ids=str)
@pytest.mark.parametrize("fusion", ["linear", "rrf"])
def test_user_text_stays_data(cluster, fusion):
    query = make_query("hybrid", fusion, {}, text=INJECTION)
    try:
        plan = plan_for(cluster, query)
    except CapabilityError:
        return
    found = False
    for request in plan.requests(["1"]):
        for path, value in walk(request.body):
            assert path[-1] != "query_string"
            if path[-1] == "source" and isinstance(value, str):
                assert value in (es.EXACT_SCRIPT, os_.EXACT_SCRIPT)
            if value == INJECTION:
                found = True
                assert path[-2:] == ("personas.text", "query") and "match" in path
    assert found


def test_mapping_files_match_the_code():
    assert json.loads((ROOT / "mappings/elasticsearch.json").read_text()) == es.create_index("items", 384).body
    assert json.loads((ROOT / "mappings/opensearch.json").read_text()) == os_.create_index("items", 384).body


def test_never_nmslib():
    with pytest.raises(Exception, match="lucene"):
        os_.vector_mapping(384, engine="nmslib")
