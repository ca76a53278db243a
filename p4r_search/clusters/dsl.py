"""Query DSL and document pieces that Elasticsearch and OpenSearch share."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..documents import ItemDocument
from ..models import MAX_PERSONAS, EvidenceSnippet, Hit, MatchedPersona
from ..query import MAX_WINDOW, Mode, PersonaQuery
from .model import Request

PATH = "personas"
VECTOR = "personas.vector"
TEXT = "personas.text"
EXACT_SOURCE = "cosineSimilarity(params.query_value, '" + VECTOR + "') + 1.0"  # ES: field name as a string
# Lucene scores a filtered kNN exactly, every matching vector, in a segment where the filter matches no more
# documents than the query's k (AbstractKnnVectorQuery: "if the filter cost is less than k, just execute an
# exact search"); on a nested field the engines wrap the item filter in ToChildBlockJoinQuery, so what it counts
# is the matched items' nested documents. With k at the engines' cap of 10,000, that is every persona of up to
# 1,428 candidate items (7 each at most), or every document of an index of up to 10,000, nested ones included.
NATIVE_EXACT_DOCUMENTS = MAX_WINDOW
NATIVE_EXACT_ITEMS = MAX_WINDOW // MAX_PERSONAS
PERSONA_FIELDS = ["persona_id", "name", "description", "rationale", "support", "evidence_review_ids", "evidence"]


def search_breadth(query: PersonaQuery) -> int:
    """How many graph neighbours HNSW explores per query (Elasticsearch `num_candidates`, OpenSearch
    `ef_search`): twice the items asked for, at least 100. The same on both engines, so recall is too."""
    return min(10_000, max(2 * query.num_candidates, 100))


def persona_properties(vector_mapping: dict[str, Any]) -> dict[str, Any]:
    """The `personas` nested field; only the vector differs between engines."""
    return {
        "type": "nested",
        "properties": {
            "persona_id": {"type": "keyword"},
            "name": {"type": "text"},
            "description": {"type": "text"},
            "rationale": {"type": "text"},
            "text": {"type": "text"},
            "evidence_review_ids": {"type": "keyword"},
            "evidence": {"type": "object", "enabled": False},
            "support": {"type": "float"},
            "vector": vector_mapping,
        },
    }


METADATA_PROPERTY = {"type": "object", "enabled": False}  # `p4r`: generator, input hash, encoder model, vector kind
ITEM_PROPERTIES = {
    "item_id": {"type": "keyword"},
    "title": {"type": "text"},
    "categories": {"type": "keyword"},
    "attributes": {"type": "object"},
}
ATTRIBUTES_AS_KEYWORDS = [
    {"attributes_as_keywords": {"path_match": "attributes.*", "match_mapping_type": "string", "mapping": {"type": "keyword"}}}
]


def existing_personas(mapping_response: Mapping[str, Any]) -> dict[str, Any] | None:
    """The current `personas` field in a GET /{index}/_mapping answer (the same shape on both engines)."""
    for body in mapping_response.values():
        props = body.get("mappings", {}).get("properties", {}) if isinstance(body, dict) else {}
        if "personas" in props:
            return props["personas"]
    return None


def persona_sources(doc: ItemDocument) -> list[dict[str, Any]]:
    return [
        {
            "persona_id": p.persona_id,
            "name": p.name,
            "description": p.description,
            "rationale": p.rationale,
            "text": p.embedding_text,
            "evidence_review_ids": list(p.evidence_review_ids),
            "evidence": [s.model_dump(mode="json") for s in p.evidence_snippets],
            "support": p.support,
            "vector": [round(float(x), 7) for x in vector],
        }
        for p, vector in zip(doc.personas, doc.vectors)
    ]


def metadata(doc: ItemDocument) -> dict[str, Any]:
    return {"generator": doc.generator.model_dump(mode="json"), "input_hash": doc.input_hash,
            "encoder_model": doc.encoder_model, "persona_vector": doc.persona_vector,
            "evidence_prior": doc.evidence_prior}


def bulk_lines(index: str, docs: Iterable[ItemDocument], *, partial: bool) -> list[dict[str, Any]]:
    """Action and source objects. `partial` (attach mode) sends `update` with only `personas` and `p4r`, so
    no other field of the user's documents changes; otherwise `index` writes whole item documents."""
    lines: list[dict[str, Any]] = []
    for doc in docs:
        personas = {"personas": persona_sources(doc), "p4r": metadata(doc)}
        if partial:
            lines += [{"update": {"_index": index, "_id": doc.item_id}}, {"doc": personas}]
        else:
            source = {"item_id": doc.item_id, "title": doc.title, "categories": list(doc.categories),
                      "attributes": dict(doc.attributes), **personas}
            lines += [{"index": {"_index": index, "_id": doc.item_id}}, source]
    return lines


def filter_clauses(query: PersonaQuery, item_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Item-level filters. `item_id` is the document id; other fields are matched as keywords (`terms`)."""
    clauses = field_filters(query.filters)
    ids = list(item_ids) if item_ids is not None else query.candidate_ids
    if ids is not None:
        clauses.append({"ids": {"values": list(ids)}})
    return clauses


def field_filters(filters: Mapping[str, Iterable[str]]) -> list[dict[str, Any]]:
    return [{"ids": {"values": list(values)}} if field == "item_id" else {"terms": {field: list(values)}}
            for field, values in filters.items()]


def exclusions(query: PersonaQuery) -> list[dict[str, Any]]:
    return [{"ids": {"values": sorted(query.exclude_ids)}}] if query.exclude_ids else []


def inner_hits(size: int = 1, name: str | None = None) -> dict[str, Any]:
    """The best persona of each hit (its `_source` without the vector). Named `name`, else by the path."""
    named = {"name": name} if name else {}
    return {**named, "size": size, "_source": {"includes": [f"{PATH}.{f}" for f in PERSONA_FIELDS]}}


def nested(query: dict[str, Any], *, with_inner_hits: bool, name: str | None = None) -> dict[str, Any]:
    clause: dict[str, Any] = {"path": PATH, "score_mode": "max", "query": query}
    if with_inner_hits:
        clause["inner_hits"] = inner_hits(name=name)
    return {"nested": clause}


def bm25_clause(text: str) -> dict[str, Any]:
    """User text goes only into a `match` query, as data."""
    return nested({"match": {TEXT: {"query": text}}}, with_inner_hits=False)


def bm25_search(index: str, query: PersonaQuery) -> Request:
    """Items by their best persona's BM25 score, the filters applied."""
    body = {"size": query.num_candidates, "query": bool_query([bm25_clause(query.text or "")], query), "_source": False}
    return Request("POST", f"/{index}/_search", body)


def bm25_of(index: str, query: PersonaQuery):
    """For a server-fused plan: the BM25 component of the chosen items (`ids`), for their `scores`."""
    from dataclasses import replace

    def request(ids) -> Request:
        ids = tuple(ids)
        return bm25_search(index, replace(query, mode=Mode.HYBRID, candidate_ids=ids, k=max(1, len(ids)),
                                          num_candidates=max(1, len(ids))))

    return request


def rescore_section(score_clause: dict[str, Any], window: int, query_weight: float,
                    persona_weight: float) -> dict[str, Any]:
    """A search body's `rescore`: each of the top `window` hits (per shard) of the main query gets
    `query_weight * its score + persona_weight * score_clause's score` (score_mode total)."""
    return {"window_size": window, "query": {"rescore_query": score_clause, "query_weight": query_weight,
                                             "rescore_query_weight": persona_weight, "score_mode": "total"}}


def bool_query(must: list[dict[str, Any]], query: PersonaQuery, item_ids: Iterable[str] | None = None) -> dict[str, Any]:
    return {"bool": {"must": must, **_restrictions(query, item_ids)}}


def parent_filter(query: PersonaQuery, extra: Sequence[dict[str, Any]] = ()) -> dict[str, Any] | None:
    """The item filters and exclusions (and `extra` filter clauses) as one `bool`; None when there are none."""
    restrictions = _restrictions(query, None)
    if extra:
        restrictions["filter"] = [*restrictions.get("filter", []), *extra]
    return {"bool": restrictions} if restrictions else None


def _restrictions(query: PersonaQuery, item_ids: Iterable[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if filters := filter_clauses(query, item_ids):
        out["filter"] = filters
    if excluded := exclusions(query):
        out["must_not"] = excluded
    return out


def vector_param(query: PersonaQuery) -> list[float]:
    return [round(float(x), 7) for x in query.vector]


def parse_hits(response: Mapping[str, Any]) -> list[tuple[str, float, dict[str, Any], dict[str, Any] | None]]:
    """(item id, score, source, best persona source or None) per hit."""
    out = []
    for hit in response.get("hits", {}).get("hits", []):
        best = best_inner_hit(hit, PATH)
        persona = persona_source(best) if best else None
        out.append((hit["_id"], float(hit.get("_score") or 0.0), hit.get("_source") or {}, persona))
    return out


def best_inner_hit(hit: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    inner = hit.get("inner_hits", {}).get(name, {}).get("hits", {}).get("hits", [])
    return inner[0] if inner else None


def persona_source(inner: Mapping[str, Any]) -> dict[str, Any]:
    persona = inner.get("_source", {})
    return persona.get(PATH, persona) if isinstance(persona.get(PATH), dict) else persona


def to_hit(item_id: str, title: str, score: float, scores: dict[str, float], persona: dict[str, Any] | None,
           explain: bool) -> Hit:
    matched = None
    evidence: list[EvidenceSnippet] = []
    if explain and persona:
        matched = MatchedPersona(persona_id=persona["persona_id"], name=persona["name"],
                                 description=persona["description"], rationale=persona["rationale"],
                                 support=float(persona["support"]))
        evidence = [EvidenceSnippet(**e) for e in persona.get("evidence", [])]
    return Hit(item_id=item_id, title=title or item_id, score=score, scores=scores, persona=matched, evidence=evidence)
