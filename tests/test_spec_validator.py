"""The strict OpenAPI contract checker (tests/contract/spec_validator.py) on hand-written bodies.

Valid bodies must pass and a single misspelled key must fail, naming the key, for both engines'
official specs. Skipped, with the reason, when the specs folder is absent (see P4R_SPECS_DIR).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

try:
    from contract.spec_validator import (
        ENGINES, ES_SPEC_PATCHES, assert_valid, request_schema, require_specs, schema_by_name, specs_available,
        validate, validate_bulk,
    )
except ImportError:  # run without tests/ on sys.path (e.g. --import-mode=importlib)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from contract.spec_validator import (
        ENGINES, ES_SPEC_PATCHES, assert_valid, request_schema, require_specs, schema_by_name, specs_available,
        validate, validate_bulk,
    )

ES, OS = "elasticsearch", "opensearch"
DIMS = 384
VECTOR = [round(0.001 * i, 3) for i in range(DIMS)]


@pytest.fixture
def es_specs():
    require_specs(ES)


@pytest.fixture
def os_specs():
    require_specs(OS)


def failing(engine: str, schema, body) -> str:
    """The joined errors of a body that must fail."""
    errors = validate(engine, schema, body)
    assert errors, f"expected {engine} to reject {body}"
    return "\n".join(errors)


# ---------------------------------------------------------------------------------------------------
# Elasticsearch
# ---------------------------------------------------------------------------------------------------
def es_index_body() -> dict:
    return {
        "settings": {"refresh_interval": "1s"},  # the serverless spec has no number_of_shards
        "mappings": {
            "dynamic_templates": [
                {"attributes_as_keywords": {"path_match": "attributes.*", "match_mapping_type": "string",
                                            "mapping": {"type": "keyword"}}}
            ],
            "properties": {
                "item_id": {"type": "keyword"},
                "title": {"type": "text"},
                "attributes": {"type": "object"},
                "personas": {
                    "type": "nested",
                    "properties": {
                        "persona_id": {"type": "keyword", "ignore_above": 256, "doc_values": True},
                        "text": {"type": "text", "analyzer": "standard"},
                        "support": {"type": "float"},
                        "evidence": {"type": "object", "enabled": False},
                        "vector": {
                            "type": "dense_vector",
                            "dims": DIMS,
                            "index": True,
                            "similarity": "cosine",
                            "index_options": {"type": "int8_hnsw", "m": 16, "ef_construction": 100},
                        },
                    },
                },
            },
        },
    }


def test_es_index_create_with_nested_dense_vector_validates(es_specs):
    schema = request_schema(ES, "PUT", "/{index}")
    assert_valid(ES, schema, es_index_body())
    # the same mapping through PUT /{index}/_mapping
    assert_valid(ES, request_schema(ES, "PUT", "/{index}/_mapping"), es_index_body()["mappings"])


@pytest.mark.parametrize("where, key", [
    (["personas", "properties", "vector"], "dimz"),
    (["personas", "properties", "vector"], "index_option"),
    (["personas", "properties", "vector", "index_options"], "ef_constructon"),
    (["personas"], "include_in_parnt"),
    (["personas", "properties", "persona_id"], "ignore_abov"),
])
def test_es_index_create_misspelled_key_fails_naming_it(es_specs, where, key):
    body = es_index_body()
    node = body["mappings"]["properties"]
    for part in where:
        node = node[part]
    node[key] = 1
    assert f"'{key}' was unexpected" in failing(ES, request_schema(ES, "PUT", "/{index}"), body)


def test_es_property_types_are_discriminated(es_specs):
    schema = schema_by_name(ES, "_types.mapping.TypeMapping")
    assert "knn_vector" in failing(ES, schema, {"properties": {"v": {"type": "knn_vector", "dimension": 3}}})
    # a dense_vector option on a keyword field belongs to another variant: rejected
    assert "'dims' was unexpected" in failing(ES, schema, {"properties": {"v": {"type": "keyword", "dims": 3}}})
    assert "'int9_hnsw'" in failing(ES, schema, {"properties": {"v": {
        "type": "dense_vector", "dims": 3, "index_options": {"type": "int9_hnsw"}}}})
    # no `type` means an object field: its `properties` is a free map of field names
    assert_valid(ES, schema, {"properties": {"o": {"properties": {"any_name": {"type": "keyword"}}}}})
    assert "'propertiez' was unexpected" in failing(ES, schema, {"properties": {"o": {"propertiez": {}}}})


def test_es_dynamic_template_variants_count_only_variant_keys(es_specs):
    schema = schema_by_name(ES, "_types.mapping.TypeMapping")
    both = {"dynamic_templates": [{"t": {"path_match": "a.*", "mapping": {"type": "keyword"},
                                         "runtime": {"type": "keyword"}}}]}
    assert "at most 1 of ['mapping', 'runtime']" in failing(ES, schema, both)


def es_search_body() -> dict:
    script_score = {
        "query": {"match_all": {}},
        "script": {"source": "cosineSimilarity(params.v, 'personas.vector') + 1.0", "params": {"v": VECTOR}},
    }
    return {
        "size": 10,
        "_source": ["title"],
        "knn": {
            "field": "personas.vector",
            "k": 10,
            "num_candidates": 100,
            "query_vector": VECTOR,
            "filter": [{"terms": {"categories": ["dresses"]}}, {"bool": {"must_not": [{"ids": {"values": ["x"]}}]}}],
            "inner_hits": {"size": 1, "_source": {"includes": ["personas.name", "personas.persona_id"]}},
        },
        "query": {
            "bool": {
                "must": [{"nested": {"path": "personas", "score_mode": "max",
                                     "query": {"script_score": script_score}, "inner_hits": {"size": 1}}}],
                "filter": [{"terms": {"categories": ["dresses"]}}],
            }
        },
    }


def test_es_search_with_nested_knn_and_script_score_validates(es_specs):
    assert_valid(ES, request_schema(ES, "POST", "/{index}/_search"), es_search_body())


@pytest.mark.parametrize("key", ["num_candidate", "queryvector", "innerhits"])
def test_es_search_misspelled_knn_key_fails_naming_it(es_specs, key):
    body = es_search_body()
    body["knn"][key] = body["knn"].pop("num_candidates") if key == "num_candidate" else 1
    assert f"'{key}' was unexpected" in failing(ES, request_schema(ES, "POST", "/{index}/_search"), body)


def test_es_search_nested_and_script_errors(es_specs):
    schema = request_schema(ES, "POST", "/{index}/_search")
    body = es_search_body()
    body["query"]["bool"]["must"][0]["nested"]["score_mode"] = "maximum"
    assert "'maximum' is not one of" in failing(ES, schema, body)
    body = es_search_body()
    body["query"]["bool"]["must"][0]["nested"]["query"]["script_score"]["script"]["parms"] = {}
    assert "'parms' was unexpected" in failing(ES, schema, body)
    body = es_search_body()
    body["knn"]["inner_hits"]["sise"] = 1
    assert "'sise' was unexpected" in failing(ES, schema, body)


def test_es_retrievers_validate_and_reject_typos(es_specs):
    schema = request_schema(ES, "POST", "/{index}/_search")
    knn = {"knn": {"field": "personas.vector", "query_vector": VECTOR, "k": 10, "num_candidates": 100}}
    standard = {"standard": {"query": {"nested": {"path": "personas", "score_mode": "max",
                                                  "query": {"match": {"personas.text": {"query": "red dress"}}}}}}}
    rrf = {"size": 10, "_source": False,
           "retriever": {"rrf": {"retrievers": [knn, standard], "rank_window_size": 100, "rank_constant": 60}}}
    linear = {"retriever": {"linear": {"rank_window_size": 100, "retrievers": [
        {"retriever": knn, "weight": 0.7, "normalizer": "minmax"},
        {"retriever": standard, "weight": 0.3, "normalizer": "minmax"}]}}}
    assert_valid(ES, schema, rrf)
    assert_valid(ES, schema, linear)
    bad = copy.deepcopy(rrf)
    bad["retriever"]["rrf"]["rank_window"] = bad["retriever"]["rrf"].pop("rank_window_size")
    assert "'rank_window' was unexpected" in failing(ES, schema, bad)
    bad = copy.deepcopy(linear)
    bad["retriever"]["linear"]["retrievers"][0]["normaliser"] = "minmax"
    assert "'normaliser' was unexpected" in failing(ES, schema, bad)


def test_es_spec_patches_restore_ts_shapes_only(es_specs):
    """Without the patches, the generator's renderings reject bodies Elasticsearch accepts."""
    schema = request_schema(ES, "POST", "/{index}/_search")
    body = es_search_body()
    raw = "\n".join(validate(ES, schema, body, spec_patches=False))
    assert "params.v: [0.0, 0.001" in raw and "is not of type 'object'" in raw  # UserDefinedValue as object
    assert "'categories' was unexpected" in raw  # TermsQuery's field key dropped
    assert "$._source: not valid" in raw  # SourceFilter's `includes` shortcut dropped
    assert len(ES_SPEC_PATCHES) == 3
    # the patched shapes are still strict
    # field names are free in `terms`, so a misspelled option is read as a field and must hold terms
    assert "$.query.terms.boosst: 2 is not of type 'array'" in failing(ES, schema, {"query": {"terms": {"boosst": 2}}})
    assert "is not of type 'array'" in failing(ES, schema, {"query": {"terms": {"categories": "dresses"}}})
    assert "'includs' was unexpected" in failing(ES, schema, {"_source": {"includs": ["title"]}})


# ---------------------------------------------------------------------------------------------------
# OpenSearch
# ---------------------------------------------------------------------------------------------------
def os_index_body(engine: str = "lucene") -> dict:
    return {
        "settings": {"index": {"knn": True, "number_of_shards": 1}},
        "mappings": {
            "dynamic_templates": [
                {"attributes_as_keywords": {"path_match": "attributes.*", "match_mapping_type": "string",
                                            "mapping": {"type": "keyword"}}}
            ],
            "properties": {
                "item_id": {"type": "keyword"},
                "personas": {
                    "type": "nested",
                    "properties": {
                        "persona_id": {"type": "keyword"},
                        "text": {"type": "text"},
                        "support": {"type": "float"},
                        "evidence": {"type": "object", "enabled": False},
                        "vector": {
                            "type": "knn_vector",
                            "dimension": DIMS,
                            "method": {"name": "hnsw", "engine": engine, "space_type": "cosinesimil",
                                       "parameters": {"m": 16, "ef_construction": 100}},
                        },
                    },
                },
            },
        },
    }


@pytest.mark.parametrize("engine", ["lucene", "faiss"])
def test_os_index_create_with_nested_knn_vector_validates(os_specs, engine):
    assert_valid(OS, request_schema(OS, "PUT", "/{index}"), os_index_body(engine))
    assert_valid(OS, request_schema(OS, "PUT", "/{index}/_mapping"), os_index_body(engine)["mappings"])
    assert_valid(OS, request_schema(OS, "PUT", "/{index}/_settings"), {"index": {"knn": True}})


@pytest.mark.parametrize("where, key", [
    (["mappings", "properties", "personas", "properties", "vector"], "dimensions"),
    (["mappings", "properties", "personas", "properties", "vector", "method"], "engin"),
    (["mappings", "properties", "personas"], "include_in_parnt"),
    (["settings", "index"], "knnn"),
])
def test_os_index_create_misspelled_key_fails_naming_it(os_specs, where, key):
    body = os_index_body()
    node = body
    for part in where:
        node = node[part]
    node[key] = True
    assert f"'{key}' was unexpected" in failing(OS, request_schema(OS, "PUT", "/{index}"), body)


def test_os_property_types_are_discriminated(os_specs):
    schema = schema_by_name(OS, "_common.mapping.TypeMapping")
    # both naming schemes address the same schema
    assert_valid(OS, "_common.mapping.yaml#/components/schemas/TypeMapping", {"properties": {"a": {"type": "keyword"}}})
    assert "dense_vector" in failing(OS, schema, {"properties": {"v": {"type": "dense_vector", "dims": 3}}})
    keyword_with_dimension = {"properties": {"v": {"type": "keyword", "dimension": 3}}}
    assert "'dimension' was unexpected" in failing(OS, schema, keyword_with_dimension)
    assert "'propertiez' was unexpected" in failing(OS, schema, {"properties": {"o": {"propertiez": {}}}})


def os_nested_knn(**extra) -> dict:
    knn = {"vector": VECTOR, "k": 100, "expand_nested_docs": True, **extra}
    return {"nested": {"path": "personas", "score_mode": "max", "query": {"knn": {"personas.vector": knn}},
                       "inner_hits": {"size": 1, "_source": {"includes": ["personas.name"]}}}}


def os_search_body(**extra) -> dict:
    return {"size": 100, "_source": False, "query": {"bool": {
        "must": [os_nested_knn(**extra)],
        "filter": [{"terms": {"categories": ["dresses"]}}],
        "must_not": [{"ids": {"values": ["seen"]}}],
    }}}


def test_os_search_nested_knn_and_hybrid_validate(os_specs):
    schema = request_schema(OS, "POST", "/{index}/_search")
    assert_valid(OS, schema, os_search_body())
    bm25 = {"nested": {"path": "personas", "score_mode": "max",
                       "query": {"match": {"personas.text": {"query": "red"}}}}}
    hybrid = {"hybrid": {"queries": [os_search_body()["query"], {"bool": {"must": [bm25]}}]}}
    assert_valid(OS, schema, {"size": 100, "query": hybrid})
    exact = {"script_score": {"query": {"match_all": {}}, "script": {
        "source": "cosineSimilarity(params.query_value, doc[params.field]) + 1.0", "lang": "painless",
        "params": {"field": "personas.vector", "query_value": VECTOR}}}}
    assert_valid(OS, schema, {"query": {"nested": {"path": "personas", "score_mode": "max", "query": exact}}})


def test_os_search_misspelled_key_fails_naming_it(os_specs):
    schema = request_schema(OS, "POST", "/{index}/_search")
    assert "'expand_nested' was unexpected" in failing(OS, schema, os_search_body(expand_nested=True))
    body = os_search_body()
    body["query"]["bool"]["must"][0]["nested"]["inner_hits"]["sise"] = 1
    assert "'sise' was unexpected" in failing(OS, schema, body)
    assert "'querys' was unexpected" in failing(OS, schema, {"query": {"hybrid": {"querys": []}}})


def test_os_search_pipelines_validate_and_reject_typos(os_specs):
    schema = request_schema(OS, "PUT", "/_search/pipeline/{id}")
    normalization = {"description": "p4r", "phase_results_processors": [{"normalization-processor": {
        "normalization": {"technique": "min_max"},
        "combination": {"technique": "arithmetic_mean", "parameters": {"weights": [0.5, 0.5]}}}}]}
    rrf = {"phase_results_processors": [
        {"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}}]}
    assert_valid(OS, schema, normalization)
    assert_valid(OS, schema, rrf)
    bad = copy.deepcopy(normalization)
    bad["phase_results_processors"][0]["normalization-processor"]["normalisation"] = {"technique": "min_max"}
    assert "'normalisation' was unexpected" in failing(OS, schema, bad)
    bad = copy.deepcopy(rrf)
    bad["phase_results_processors"][0]["score-ranker-processor"]["combination"]["technique"] = "rff"
    assert "'rff' is not one of" in failing(OS, schema, bad)


# ---------------------------------------------------------------------------------------------------
# Bulk (NDJSON: action lines and update bodies validated separately)
# ---------------------------------------------------------------------------------------------------
BULK = {ES: ("_global.bulk.OperationContainer", "_global.bulk.UpdateAction"),
        OS: ("_core.bulk.OperationContainer", "_core.bulk.UpdateAction")}


@pytest.mark.parametrize("engine", ENGINES)
def test_bulk_lines_validate_and_typos_fail(engine):
    require_specs(engine)
    action, update = BULK[engine]
    assert_valid(engine, action, {"index": {"_index": "items", "_id": "1"}})
    assert_valid(engine, action, {"update": {"_index": "items", "_id": "1"}})
    assert_valid(engine, update, {"doc": {"personas": [{"persona_id": "p1", "vector": [0.1, 0.2]}], "p4r": {"a": 1}}})
    assert "'updte' was unexpected" in failing(engine, action, {"updte": {"_index": "items", "_id": "1"}})
    assert "'_indx' was unexpected" in failing(engine, action, {"index": {"_indx": "items", "_id": "1"}})
    assert "'docs' was unexpected" in failing(engine, update, {"docs": {"a": 1}})
    lines = [{"index": {"_index": "items", "_id": "1"}}, {"item_id": "1", "title": "t"},
             {"update": {"_index": "items", "_id": "2"}}, {"doc": {"personas": []}}]
    assert validate_bulk(engine, lines) == []
    errors = validate_bulk(engine, lines + [{"update": {"_id": "3"}}, {"doc_as_upsrt": True}])
    assert len(errors) == 1 and errors[0].startswith("line 6:") and "'doc_as_upsrt'" in errors[0]


# ---------------------------------------------------------------------------------------------------
# The helper itself
# ---------------------------------------------------------------------------------------------------
def test_missing_specs_skip_with_a_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("P4R_SPECS_DIR", str(tmp_path))
    assert not specs_available()
    with pytest.raises(pytest.skip.Exception, match="P4R_SPECS_DIR"):
        require_specs(ES)


def test_unknown_operations_and_names_are_errors(es_specs, os_specs):
    with pytest.raises(KeyError, match="no path"):
        request_schema(ES, "POST", "/{index}/_serach")
    with pytest.raises(KeyError, match="request body"):
        request_schema(OS, "DELETE", "/{index}")
    with pytest.raises(KeyError, match="TypeMaping"):
        schema_by_name(ES, "_types.mapping.TypeMaping")
    with pytest.raises(ValueError):
        validate("solr", {}, {})
