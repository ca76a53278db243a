"""The persona part of a search, as plain dicts to put into the requests your own service already sends.

    clauses = PersonaClauses.detect(client)        # or PersonaClauses("opensearch", "2.19.1")
    body = {"query": {"bool": {"must": [clauses.knn(vector, k=20, filter=[your_filter])],
                               "filter": [your_filter]}},
            "aggs": your_aggs}
    for raw in client.search(index=..., body=body)["hits"]["hits"]:
        hit = clauses.hit(raw)                     # item id, cosine, the matched persona and its evidence

Every clause is built by the same dialect code as `p4r recommend` and checked against the cluster's version,
licence and plugins (`p4r_search/clusters/capabilities.py`): what the cluster cannot do raises
`CapabilityError` saying what to use instead. No I/O, except `detect`, which asks the cluster what it is.
The vector is always a script or query parameter, and keyword text only ever goes into a `match` query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .clusters import checks, dsl, elasticsearch, opensearch
from .clusters.capabilities import CapabilityError, require, vector_score_to_cosine
from .clusters.dialects import dialect_for
from .clusters.model import Cluster, Distribution, parse_engine, parse_version
from .errors import ConfigError
from .models import Hit
from .query import MAX_WINDOW, Mode, PersonaQuery, check_filter_field

Vector = np.ndarray | Sequence[float] | PersonaQuery
KNN_HITS, EXACT_HITS = "p4r-knn", "p4r-exact"  # inner hits' names: two nested clauses may not share one


@dataclass(frozen=True)
class PersonaClauses:
    """Clauses for one cluster. `engine` is "es" or "opensearch"; `version` e.g. "8.19.0"; `license` is
    Elasticsearch's (basic, trial, enterprise, ...); `os_engine` the OpenSearch vector engine of the mapping."""

    cluster: Cluster
    os_engine: str = "lucene"

    @classmethod
    def for_version(cls, engine: str, version: str, license: str | None = None, *,
                    os_engine: str = "lucene") -> PersonaClauses:
        distribution = parse_engine(engine)
        licence = (license or "basic") if distribution is Distribution.ELASTICSEARCH else None
        return cls(Cluster(distribution, parse_version(version), licence), os_engine)

    @classmethod
    def detect(cls, client: Any, *, os_engine: str = "lucene") -> PersonaClauses:
        """Ask the cluster behind an elasticsearch-py or opensearch-py client what it is (GET /, the licence,
        the plugins), as `p4r` does on connect."""
        from .backends.cluster import ClientTransport, detect
        from .backends.connect import client_distribution

        return cls(detect(ClientTransport(client, client_distribution(client))), os_engine)

    # -- mappings ----------------------------------------------------------------------------------------
    def index_body(self, dim: int) -> dict[str, Any]:
        """The body of PUT /{index} for a new index of items with personas (settings and mappings)."""
        return dialect_for(self.cluster, self.os_engine).create_index("-", dim).body

    def mapping(self, dim: int) -> dict[str, Any]:
        """The body of PUT /{index}/_mapping that adds `personas` (and p4r's metadata) to an existing index.
        OpenSearch needs `index.knn: true` on the index, which only index creation can set."""
        return dialect_for(self.cluster, self.os_engine).put_mapping("-", dim).body

    # -- query clauses ---------------------------------------------------------------------------------
    def knn(self, vector: Vector, k: int = 10, *, filter: Sequence[dict[str, Any]] = (),
            exclude_ids: Iterable[str] = (), num_candidates: int | None = None,
            inner_hits: bool = True) -> dict[str, Any]:
        """The k items nearest to the profile by their best persona (approximate, HNSW), as a `nested` query
        clause for your `bool`. Put your filters on item fields in `filter`: inside the kNN they are
        pre-filters (the k nearest *matching* items); only in your `bool` they would remove items after
        the k were found. `num_candidates` (default k) is how many items the kNN returns before your `size`;
        the graph search explores max(2 * num_candidates, 100). Scores are (1 + cosine) / 2
        (`cosine(score, exact=False)`).
        Elasticsearch: the `knn` query (8.12+); OpenSearch: the k-NN plugin's `knn` query."""
        query = self._query(vector, k, exclude_ids, num_candidates)
        if self.cluster.distribution is Distribution.ELASTICSEARCH:
            clause = elasticsearch.knn_query(self.cluster, query, filter, with_inner_hits=inner_hits)
        else:
            clause = opensearch.knn_clause(self.cluster, query, filter, with_inner_hits=inner_hits)
        return named_inner_hits(clause, KNN_HITS)

    def knn_section(self, vector: Vector, k: int = 10, *, filter: Sequence[dict[str, Any]] = (),
                    exclude_ids: Iterable[str] = (), num_candidates: int | None = None) -> dict[str, Any]:
        """Elasticsearch only: the top-level `knn` section of a search body (8.11+; the form `p4r` sends).
        Its hits are OR-ed with your `query` and their scores summed."""
        if self.cluster.distribution is not Distribution.ELASTICSEARCH:
            raise CapabilityError("the top-level knn section is Elasticsearch's; on OpenSearch use knn()")
        require(self.cluster, "nested_knn")
        query = self._query(vector, k, exclude_ids, num_candidates)
        section = elasticsearch.knn_clause(query, filter)
        return {**section, "inner_hits": dsl.inner_hits(name=KNN_HITS)}

    def exact(self, vector: Vector, *, inner_hits: bool = True) -> dict[str, Any]:
        """Every persona of every matching item scored exactly: a `nested` query (score_mode max) around a
        painless `script_score` of 1 + cosine, the vector a script parameter. Put it in your `bool`'s
        `must`; your filters then decide which items are scored (a scan: keep them selective)."""
        require(self.cluster, "painless")
        clause = self._dialect_module().exact_clause(self._query(vector), with_inner_hits=inner_hits)
        return named_inner_hits(clause, EXACT_HITS)

    def keywords(self, text: str, *, inner_hits: bool = False) -> dict[str, Any]:
        """BM25 over persona text, an item scored by its best persona: a `nested` `match` (text stays data).
        Inner hits are off by default: two nested clauses on `personas` in one request may not both ask."""
        return dsl.nested({"match": {dsl.TEXT: {"query": text}}}, with_inner_hits=inner_hits)

    def filters(self, filters: Mapping[str, Iterable[str]] | None = None,
                exclude_ids: Iterable[str] = ()) -> dict[str, Any] | None:
        """p4r's item filters (`categories`, `item_id`, `attributes.NAME` → accepted values) and excluded ids
        as one `bool` for a `filter` list; None when there are none."""
        for name in filters or {}:
            check_filter_field(name)
        return dsl.parent_filter(checks.restriction(filters or {}, None, exclude_ids))

    def rescore(self, vector: Vector, *, window: int = 50, query_weight: float = 1.0,
                persona_weight: float = 1.0) -> dict[str, Any]:
        """A `rescore` section for any search body: each of the top `window` hits of your query (per shard)
        gets `query_weight * its score + persona_weight * (1 + best persona cosine)`; your query's filters
        still decide which items are hits. Inner hits are not returned from a rescore query: ask `exact`
        with an `ids` filter for the matched personas of the hits you show."""
        if not 1 <= window <= MAX_WINDOW:
            raise ConfigError(f"the window must be in [1, {MAX_WINDOW:,}] (index.max_rescore_window), got {window}")
        clause = self.exact(vector, inner_hits=False)  # the engines drop inner hits in a rescore query
        return dsl.rescore_section(clause, window, query_weight, persona_weight)

    # -- reading answers -----------------------------------------------------------------------------------
    def hit(self, raw: Mapping[str, Any]) -> Hit:
        """One raw hit as p4r's `Hit`: the matched persona with its evidence, and its cosine, from the inner
        hit of `knn()` or `exact()` (named p4r-knn and p4r-exact, so both can be in one request; exact wins).
        `score` is that cosine; `scores` also holds the hit's own `_score` under "request"."""
        for name, exact in ((EXACT_HITS, True), (KNN_HITS, False)):
            if inner := dsl.best_inner_hit(raw, name):
                cosine = vector_score_to_cosine(float(inner.get("_score") or 0.0), exact=exact)
                scores = {"cosine": cosine, "request": float(raw.get("_score") or 0.0)}
                return dsl.to_hit(raw["_id"], (raw.get("_source") or {}).get("title", ""), cosine, scores,
                                  dsl.persona_source(inner), explain=True)
        raise ConfigError(f"hit {raw.get('_id')!r} has no persona inner hit: build the request with knn() or "
                          "exact() with inner_hits=True (a rescore query returns none)")

    @staticmethod
    def cosine(score: float, *, exact: bool) -> float:
        """A persona clause's score back to the cosine: exact 1 + cos; kNN (1 + cos) / 2 on both engines."""
        return vector_score_to_cosine(score, exact=exact)

    def _query(self, vector: Vector, k: int = 10, exclude_ids: Iterable[str] = (),
               num_candidates: int | None = None) -> PersonaQuery:
        if isinstance(vector, PersonaQuery):
            return replace(vector, mode=Mode.KNN, text=None)
        return PersonaQuery(vector=np.asarray(vector, dtype=np.float32), k=k,
                            num_candidates=num_candidates or k, exclude_ids=frozenset(exclude_ids))

    def _dialect_module(self):
        return elasticsearch if self.cluster.distribution is Distribution.ELASTICSEARCH else opensearch


def named_inner_hits(clause: dict[str, Any], name: str) -> dict[str, Any]:
    if "inner_hits" in clause["nested"]:
        clause["nested"]["inner_hits"] = {"name": name, **clause["nested"]["inner_hits"]}
    return clause
