"""Semantic rules over every body p4r would send, across versions, licences, modes, fusions, filters and
OpenSearch engines (issue 9). A schema says a body is well formed; these say a given version accepts it and
answers as meant. Each rule names where it is stated (see also docs/compatibility.md)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from p4r_search.clusters import dsl
from p4r_search.clusters.capabilities import TABLE, CapabilityError
from p4r_search.clusters.dialects import dialect_for
from p4r_search.clusters.model import Cluster, Distribution
from p4r_search.errors import ConfigError
from p4r_search.query import MAX_WINDOW, PersonaQuery

ES_VERSIONS = [(8, 11, 0), (8, 12, 0), (8, 13, 0), (8, 16, 0), (8, 18, 0), (8, 18, 3), (8, 19, 0), (9, 0, 0),
               (9, 0, 5), (9, 1, 0), (9, 2, 0)]
OS_VERSIONS = [(2, 12, 0), (2, 16, 0), (2, 18, 0), (2, 19, 0), (3, 0, 0), (3, 1, 0), (3, 5, 0)]
NEURAL = frozenset({"lang-painless", "opensearch-knn", "opensearch-neural-search"})
CLUSTERS = ([Cluster(Distribution.ELASTICSEARCH, v, lic) for v in ES_VERSIONS for lic in ("basic", "trial")]
            + [Cluster(Distribution.OPENSEARCH, v, plugins=NEURAL) for v in OS_VERSIONS])
MODES = [("exact", None), ("knn", None), ("hybrid", "linear"), ("hybrid", "rrf"), ("rescore", None)]
WEIGHTS = [(0.5, 0.5), (0.7, 0.5), (1.0, 0.0)]
FILTERS = [{}, {"filters": {"categories": ("Dresses",), "attributes.division": ("General",)},
                "exclude_ids": frozenset({"seen-1", "seen-2"})}]
SIZES = [(10, 100), (10, 10_000)]


def queries():
    vector = np.linspace(-1, 1, 8)
    for (mode, fusion), (wv, wt), extra, (k, candidates) in itertools.product(MODES, WEIGHTS, FILTERS, SIZES):
        text = "soft stretch" if mode in ("hybrid", "rescore") else None
        yield PersonaQuery(vector=vector, text=text, mode=mode, fusion=fusion or "linear", vector_weight=wv,
                           text_weight=wt, k=k, num_candidates=candidates, **extra)


def walk(node, path=()):
    """(path, key, value) of every dict entry in a body."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, path)


def bodies(cluster: Cluster, query: PersonaQuery, engine: str):
    dialect = dialect_for(cluster, engine)
    plan = dialect.search_plan("items", cluster, query)
    return [dialect.create_index("items", 384), dialect.put_mapping("items", 384), *plan.requests(["1", "2"])]


def check_rules(cluster: Cluster, query: PersonaQuery, engine: str) -> None:
    where = f"{cluster} {engine} {query.mode.value}/{query.fusion.value} w={query.vector_weight},{query.text_weight}"
    for request in bodies(cluster, query, engine):
        text = json.dumps(request.body)
        # int8_hnsw from Elasticsearch 8.12
        if cluster.distribution is Distribution.ELASTICSEARCH and cluster.version < (8, 12, 0):
            assert "int8_hnsw" not in text, where
        for path, key, value in walk(request.body):
            # sizes: num_candidates capped at 10,000 (ES), size by index.max_result_window
            if key in ("size", "k", "num_candidates", "rank_window_size", "window_size") and isinstance(value, int):
                assert value <= MAX_WINDOW, f"{where}: {'.'.join((*path, key))} = {value}"
            # normalization-processor and score-ranker weights: each in [0, 1], summing to 1 (validateWeights)
            if key == "weights" and path and path[-1] == "parameters":
                assert all(0 <= w <= 1 for w in value) and abs(sum(value) - 1) <= 0.01, f"{where}: {value}"
            # OpenSearch nested knn: filters inside it (pre-filter), never only around it
            if cluster.distribution is Distribution.OPENSEARCH and key == "knn" and isinstance(value, dict):
                knn = value[dsl.VECTOR]
                if query.filters or query.exclude_ids:
                    inner = json.dumps(knn.get("filter"))
                    assert "Dresses" in inner and "seen-1" in inner, f"{where}: knn without its filter: {knn}"
            # rescore: the persona script is a nested max over personas; the caller's filters stay in the main
            # query, untouched by the rescore (QueryRescorer only rescores the main query's top hits)
            if key == "rescore":
                rescore = value["query"]
                assert rescore["rescore_query"]["nested"]["score_mode"] == "max", where
                # OpenSearch 3.x scores BM25 without the k1 + 1 factor: its weight carries it back (2.2)
                scale = 2.2 if cluster.distribution is Distribution.OPENSEARCH and cluster.version >= (3, 0, 0) else 1
                assert rescore["query_weight"] == pytest.approx(query.text_weight * scale), where
                assert rescore["rescore_query_weight"] == query.vector_weight, where
                assert "filter" not in json.dumps(rescore) and "inner_hits" not in json.dumps(rescore), where
            # RRF rank_constant where the version reads it
            if key == "score-ranker-processor":
                combination = value["combination"]
                top_level = cluster.version >= (3, 1, 0)
                assert ("rank_constant" in combination) is top_level, f"{where}: {combination}"
                assert ("rank_constant" in combination.get("parameters", {})) is not top_level, where
        if cluster.distribution is Distribution.ELASTICSEARCH:
            broken = ((8, 18, 0) <= cluster.version < (8, 18, 3)) or ((9, 0, 0) <= cluster.version < (9, 1, 0))
            assert not (broken and '"linear"' in text), f"{where}: linear retriever on a minmax-bug version"


@pytest.mark.parametrize("cluster", CLUSTERS, ids=str)
def test_every_body_follows_the_rules(cluster):
    checked = refused = 0
    for query in queries():
        for engine in ("lucene", "faiss") if cluster.distribution is Distribution.OPENSEARCH else ("lucene",):
            try:
                check_rules(cluster, query, engine)
                checked += 1
            except CapabilityError as exc:  # refused before any request: must say why and what instead
                assert "cannot" in str(exc) or "only from" in str(exc), exc
                refused += 1
                if engine == "faiss":
                    assert cluster.version < (2, 19, 0), f"{cluster}: faiss refused from 2.19: {exc}"
    assert checked, f"{cluster}: every combination was refused"


def test_sizes_over_the_engines_cap_fail_before_any_request():
    with pytest.raises(ConfigError, match="at most 10,000"):
        PersonaQuery(vector=np.ones(4), k=10, num_candidates=10_001)
    with pytest.raises(ConfigError, match="10,001 candidate ids"):
        PersonaQuery(vector=np.ones(4), mode="exact", candidate_ids=[str(n) for n in range(10_001)])


def test_every_capability_says_where_it_is_stated():
    missing = [name for name, cap in TABLE.items() if not cap.source]
    assert not missing, f"capabilities without a source: {missing}"


def test_the_compatibility_doc_shows_the_table_as_the_code_holds_it():
    from conftest import ROOT
    from p4r_search.clusters.capabilities import markdown_table

    assert markdown_table() in (ROOT / "docs" / "compatibility.md").read_text(encoding="utf-8")
