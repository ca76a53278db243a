"""The persona part inside a team's own requests (`PersonaClauses`, the README's client blocks) and rescore mode,
on the real engines (tests/live_fixtures.py: OpenSearch 3.x and 2.x, Elasticsearch 8.x from Maven Central, or
the clusters named in P4R_OPENSEARCH_URL / P4R_ES_URL), each answer held against the embedded engine.

The Elasticsearch integration-test distribution has no painless: there the `knn` clause and the README's
Elasticsearch block run for real, and `exact`, `rescore` and rescore mode are asserted refused with why."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from conftest import read_jsonl
from live_support import (
    SCORE_TOLERANCE,
    TIE,
    assert_refused,
    painless,
    persona_cosines,
    raw_hits,
)
from test_readme import readme_block

from p4r_search import PersonaClauses
from p4r_search.clusters.capabilities import CapabilityError
from p4r_search.clusters.model import Distribution, Request
from p4r_search.query import PersonaQuery

README_PROFILE = "a flattering dress for a petite woman"  # the text the README blocks encode
DIVISION = "General"


def clauses_for(live) -> PersonaClauses:
    return PersonaClauses.detect(live.backend.transport.client)


def search(live, body: dict) -> dict:
    return live.backend.transport.client.search(index=live.index, body=body)


def items_by_id(subset) -> dict[str, dict]:
    return {i["item_id"]: i for i in read_jsonl(subset["items"])}


def test_detect_reads_the_cluster_as_p4r_does(live):
    assert clauses_for(live).cluster == live.backend.cluster


def test_a_filter_inside_the_knn_is_a_pre_filter_and_around_it_a_post_filter(live, embedded, subset,
                                                                               query_vectors):
    """With k=1: inside, the nearest item *of the division*; only in the bool around it, nothing, because the
    nearest item of all is of another division (read in the engines' source; issue 13)."""
    items, clauses = items_by_id(subset), clauses_for(live)
    for vector in query_vectors:
        nearest = embedded.search(PersonaQuery(vector=vector, k=1, mode="exact"))[0].item_id
        other = next((i["attributes"]["division"] for i in items.values()
                      if i["attributes"]["division"] != items[nearest]["attributes"]["division"]), None)
        if other:
            break
    assert other, "the subset has one division only; the test data changed"
    wanted = {"term": {"attributes.division": other}}
    expected = embedded.search(PersonaQuery(vector=vector, k=1, mode="exact",
                                            filters={"attributes.division": (other,)}))[0]
    # one segment, so that "the k nearest" is one list (OpenSearch's Lucene engine finds k per segment)
    live.send(Request("POST", f"/{live.index}/_forcemerge", params={"max_num_segments": "1"}))
    live.backend.refresh()
    inside = search(live, {"size": 1, "query": {"bool": {"must": [clauses.knn(vector, k=1, filter=[wanted])]}}})
    around = search(live, {"size": 10, "query": {"bool": {"must": [clauses.knn(vector, k=1)], "filter": [wanted]}}})
    where = f"{live.where}: nearest {nearest}, filter division={other}"
    assert [i for i, _ in raw_hits(inside)] == [expected.item_id], f"{where}: {raw_hits(inside)}"
    kept = [i for i, _ in raw_hits(around)]
    cluster = live.backend.cluster
    if cluster.distribution is Distribution.OPENSEARCH and cluster.version < (3, 0, 0):
        # 2.x keeps the whole ef_search-wide candidate list (k-NN trims to k from 3.x): what passes the filter
        assert set(kept) <= {i for i, item in items.items() if item["attributes"]["division"] == other}, where
    else:
        assert kept == [], f"{where}: a bool filter around the kNN kept {kept}"
    hit = clauses.hit(inside["hits"]["hits"][0])
    tolerance = SCORE_TOLERANCE  # float vectors on both engines
    assert abs(hit.scores["cosine"] - expected.score) <= tolerance, f"{where}: {hit.scores}, exact {expected.score}"
    assert_best_persona(hit.item_id, hit.persona.name, embedded, vector, tolerance, where)


def assert_best_persona(item_id: str, name: str, embedded, vector, tolerance: float, where: str) -> None:
    """The named persona is (one of) the item's best by exact cosine; names may repeat within an item."""
    cosines = persona_cosines(embedded, item_id, vector)
    best = max(cosines.values())
    named = [cosines[p.persona_id] for p in embedded.personas(item_id) if p.name == name]
    assert named and max(named) >= best - tolerance - TIE, f"{where}: item {item_id}: {name!r} is not its best persona"


def run_readme_block(name: str, live, monkeypatch, capsys) -> list[str]:
    url_variable = "OPENSEARCH_URL" if name == "opensearch-client" else "ELASTICSEARCH_URL"
    monkeypatch.setenv(url_variable, live.config.url)
    monkeypatch.setenv("P4R_INDEX", live.index)
    capsys.readouterr()
    with live.config.auth_env():
        exec(compile(readme_block(name), f"README.md:{name}", "exec"), {"__name__": "__readme__"})  # noqa: S102 - the README, as written
    return capsys.readouterr().out.strip().splitlines()


def test_the_readme_client_block_runs_on_this_engine(live, embedded, subset, encoder, monkeypatch, capsys):
    """The README's opensearch-py block on OpenSearch, its elasticsearch-py block on Elasticsearch, as written
    (only the URL and the index come from the environment): hits of the division, each with its exact cosine
    and its best persona; the team's aggregation over the same hits; on OpenSearch, the rescore's order."""
    if live.config.url and not live.config.url.startswith("http://"):
        pytest.skip("the README blocks make a plain client; this cluster needs TLS or auth set up in code")
    opensearch = live.backend.cluster.distribution is Distribution.OPENSEARCH
    lines = run_readme_block("opensearch-client" if opensearch else "elasticsearch-client", live, monkeypatch, capsys)
    items, vector = items_by_id(subset), encoder.encode([README_PROFILE])[0]
    general = {i for i, item in items.items() if item["attributes"]["division"] == DIVISION}
    tolerance = SCORE_TOLERANCE  # float vectors on both engines
    hit_lines = [line for line in lines if re.match(r"^\S+ -?\d\.\d+ ", line)]
    assert hit_lines and len(hit_lines) <= 5, lines
    for line in hit_lines:
        item, cosine, name = line.split(" ", 2)
        where = f"{live.where}: README hit {line!r}"
        assert item in general, f"{where}: not of division {DIVISION}"
        exact = max(persona_cosines(embedded, item, vector).values())
        assert abs(float(cosine) - exact) <= max(tolerance, 1e-3), f"{where}: exact cosine {exact:.4f}"
        assert_best_persona(item, name, embedded, vector, tolerance, where)
    buckets = eval(next(line for line in lines if line.startswith("{")))  # the team's aggregation
    assert sum(buckets.values()) >= len(hit_lines) and set(buckets) <= {items[i]["attributes"]["class"] for i in general}
    if opensearch:
        assert_readme_rescore(lines[-1], live, embedded, vector)


def assert_readme_rescore(line: str, live, embedded, vector) -> None:
    """0.2 x the team's score + 1.0 x (1 + best cosine), over the team's own hits, best first; personas asked
    separately (a rescore query returns no inner hits)."""
    listed, _, named = line.partition(" {")
    reranked, personas = eval(listed), eval("{" + named)
    team = {"size": 50, "query": {"bool": {"must": [{"match": {"title": "dresses"}}],
                                           "filter": [{"term": {"attributes.division": DIVISION}}]}}}
    original = dict(raw_hits(search(live, team)))
    expected = {i: 0.2 * s + (1 + max(persona_cosines(embedded, i, vector).values())) for i, s in original.items()}
    order = sorted(expected, key=lambda i: -expected[i])[:5]
    assert reranked and set(reranked) <= set(original), f"{live.where}: {reranked} vs the team's hits {original}"
    for got, want in zip(reranked, order):
        assert got == want or abs(expected[got] - expected[want]) <= SCORE_TOLERANCE, f"{reranked} vs {order}"
    for item, name in personas.items():
        assert_best_persona(item, name, embedded, vector, SCORE_TOLERANCE, f"{live.where} rescore")


def test_rescore_of_a_teams_query_adds_the_persona_score_and_keeps_its_filters(live, embedded, subset,
                                                                               query_vectors):
    """Any query the team brings (here a category filter and a title match): each hit in the window gets
    qw x its score + pw x (1 + best cosine); hits past the window keep qw x score; nothing is added."""
    clauses, vector = clauses_for(live), query_vectors[2]
    category = read_jsonl(subset["items"])[0]["categories"][0]
    team = {"bool": {"should": [{"match": {"title": "dresses"}}], "filter": [{"term": {"categories": category}}]}}
    if not painless(live):
        with pytest.raises(CapabilityError, match="no lang-painless module"):
            clauses.rescore(vector)
        return
    original = dict(raw_hits(search(live, {"size": 50, "query": team})))
    assert len(original) >= 3, f"{live.where}: the team's query found {original}"
    window = len(original) - 1
    answer = search(live, {"size": 50, "query": team,
                           "rescore": clauses.rescore(vector, window=window, query_weight=0.5, persona_weight=2.0)})
    got = dict(raw_hits(answer))
    assert set(got) == set(original), f"{live.where}: the rescore changed which items match"
    rescored = sorted(original, key=lambda i: -original[i])[:window]
    for item, score in got.items():
        persona = 2.0 * (1 + max(persona_cosines(embedded, item, vector).values())) if item in rescored else 0.0
        assert abs(score - (0.5 * original[item] + persona)) <= 2 * SCORE_TOLERANCE, (
            f"{live.where}: item {item}: {score} vs {0.5 * original[item]} + {persona}")


BM25_TOLERANCE = 0.1  # relative: tantivy and Lucene length norms and the stemmed vocabulary differ (measured: up to 8 %)


def test_rescore_mode_agrees_with_the_embedded_engine(live, embedded, query_vectors):
    """`p4r recommend --mode rescore`: BM25 over persona text finds the window, the exact persona score
    reranks it. The clusters analyse persona text with the standard analyzer and the embedded engine stems
    English, so the keywords are ones both match on the same items (their BM25 then differs by a few per
    cent), and the window holds every match: each rank's fused score agrees within what that difference
    allows, and each hit's cosine is the exact one."""
    keywords, bm25 = agreeing_keywords(live, embedded)
    weights = {"vector_weight": 0.7, "text_weight": 0.3}
    tolerance = weights["text_weight"] * BM25_TOLERANCE * max(bm25.values()) + SCORE_TOLERANCE
    for n, vector in enumerate(query_vectors[:5]):
        query = PersonaQuery(vector=vector, text=keywords, mode="rescore", k=5, num_candidates=len(bm25) + 5,
                             **weights)
        if not painless(live):
            return assert_refused(live, query)
        expected, actual = embedded.search(query), live.backend.search(query)
        where = f"{live.where} rescore {keywords!r}, query {n}:\n  cluster  {actual}\n  embedded {expected}"
        assert len(actual) == len(expected) == 5, where
        for a, e in zip(actual, expected):
            assert abs(a.score - e.score) <= tolerance, where
            assert a.item_id in bm25 and a.persona is not None and a.evidence, where
            assert abs(a.scores["cosine"] - max(persona_cosines(embedded, a.item_id, vector).values())) <= SCORE_TOLERANCE
            assert abs(a.scores["bm25"] - bm25[a.item_id]) <= BM25_TOLERANCE * bm25[a.item_id], where
            assert a.score == pytest.approx(0.3 * a.scores["bm25"] + 0.7 * a.scores["cosine"], abs=1e-4), where


def agreeing_keywords(live, embedded) -> tuple[str, dict[str, float]]:
    """Keywords that the cluster and the embedded engine match on the same items, with the embedded BM25."""
    from p4r_search.clusters import dsl, opensearch

    cache = embedded.vectors()
    item_of_key = dict(zip(cache.keys.tolist(), cache.items.tolist()))
    tried = {}
    for keywords in ("fit size", "size", "petite", "color", "small"):
        ours: dict[str, float] = {}
        for key, score in embedded.store.bm25(keywords, 10_000, {}, None):
            ours[item_of_key[key]] = max(ours.get(item_of_key[key], 0.0), score)
        query = PersonaQuery(vector=np.ones(cache.dim), text=keywords, mode="hybrid", k=50, num_candidates=50)
        scale = opensearch.keyword_scale(live.backend.cluster)  # OpenSearch 3.x: BM25 without k1 + 1
        theirs = {i: s * scale for i, s in raw_hits(live.send(dsl.bm25_search(live.backend.index, query)))}
        tried[keywords] = {i: (round(ours.get(i, 0), 3), round(theirs.get(i, 0), 3)) for i in set(ours) | set(theirs)}
        if len(ours) >= 8 and set(ours) == set(theirs) and all(
                abs(theirs[i] - ours[i]) <= BM25_TOLERANCE * ours[i] for i in ours):
            return keywords, ours
    pytest.fail(f"{live.where}: no keywords where cluster and embedded BM25 agree: {tried}")


def test_readme_clauses_need_nothing_but_the_public_names():
    for name in ("opensearch-client", "elasticsearch-client"):
        assert "from p4r_search import Encoder, PersonaClauses" in readme_block(name)
    assert os.path.basename(__file__) in (readme_block.__globals__["ROOT"] / "README.md").read_text(encoding="utf-8")


def test_the_readme_cluster_commands_run_on_this_engine(live, subset, subset_personas, tmp_path):
    """The README's cluster block as written, with this cluster's URL, engine and index names (prefixed with
    this run's, so that runs never meet): create, build, attach to a team's index holding its own documents,
    recommend (refused with why where the cluster has no painless), and the dry run."""
    from test_readme_commands import run_block

    engine = "opensearch" if live.backend.cluster.distribution is Distribution.OPENSEARCH else "es"
    names = {"items": f"{live.index}-readme-items", "products": f"{live.index}-readme-products"}
    live.created.extend(names.values())
    (tmp_path / "examples").mkdir()
    for name in ("items", "interactions"):
        (tmp_path / "examples" / f"{name}.jsonl").write_bytes(subset[name].read_bytes())
    (tmp_path / "personas.jsonl").write_bytes(subset_personas.read_bytes())
    settings = {"settings": {"index": {"knn": True}}} if engine == "opensearch" else {}
    live.send(Request("PUT", f"/{names['products']}", {**settings, "mappings": {"properties": {"sku": {"type": "keyword"}}}}))
    for item in read_jsonl(subset["items"]):
        live.send(Request("PUT", f"/{names['products']}/_doc/{item['item_id']}", {"sku": f"sku-{item['item_id']}"}))

    def prepare(command: list[str]) -> list[str]:
        out = []
        for arg in command:
            arg = {"https://localhost:9200": live.config.url, "es": engine}.get(arg, arg)
            out.append(names.get(arg, arg) if out and out[-1] == "--index" else arg)
        return out

    with live.config.auth_env():  # its recommend is knn mode: one request, no painless, on every engine
        outputs = run_block("clusters", tmp_path, prepare)
        assert "recommendation(s) for demo-casual-denim" in "".join(outputs.values())
    products = live.send(Request("POST", f"/{names['products']}/_search", {"size": 50}))["hits"]["hits"]
    assert products and all(h["_source"]["sku"] == f"sku-{h['_id']}" and h["_source"]["personas"] for h in products)


def test_a_history_profile_from_the_teams_own_client(live, embedded, subset):
    """`Recommender(ClusterBackend.from_client(client, index)).profile(...)`: the vector a team puts in the
    clauses, read from the cluster, equals the embedded engine's for the same history."""
    from p4r_search import ClusterBackend, Recommender, UserInput

    history = tuple(i["item_id"] for i in read_jsonl(subset["items"])[:3])
    backend = ClusterBackend.from_client(live.backend.transport.client, live.index)
    assert backend.cluster == live.backend.cluster
    theirs = Recommender(backend).profile(UserInput(history=history))
    ours = Recommender(embedded).profile(UserInput(history=history))
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
