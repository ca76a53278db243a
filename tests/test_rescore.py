"""Rescore mode on the embedded engine (real tantivy + usearch index of the example subset) and through the CLI:
BM25 over persona text finds a window, the exact persona score reranks it, as a cluster's `rescore` does
(`query_weight * BM25 + rescore_query_weight * score`, score_mode total). The clusters' answers are held
against these in tests/test_live_team_requests.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import read_jsonl, run_cli

from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.errors import ConfigError
from p4r_search.query import PersonaQuery
from p4r_search.recommend import SearchOptions

USER = "demo-petite-dresses"


@pytest.fixture(scope="module")
def backend(subset_index) -> EmbeddedBackend:
    return EmbeddedBackend(subset_index)


def best_bm25(backend: EmbeddedBackend, text: str, filters=None) -> dict[str, float]:
    cache = backend.vectors()
    item_of_key = dict(zip(cache.keys.tolist(), cache.items.tolist()))
    best: dict[str, float] = {}
    for key, score in backend.store.bm25(text, 10_000, filters or {}, None):
        item = item_of_key[key]
        best[item] = max(best.get(item, 0.0), score)
    return best


def test_rescore_reranks_the_bm25_window_by_the_weighted_sum(backend, encoder):
    vector = encoder.encode(["a flattering dress for a petite woman"])[0]
    text = "fit size"
    bm25 = best_bm25(backend, text)
    assert len(bm25) >= 6, "the subset changed: too few items match the keywords"
    window = sorted(bm25, key=lambda i: (-bm25[i], i))[:5]
    vectors = backend.persona_vectors(window)
    q = vector / np.linalg.norm(vector)
    expected = {i: 0.3 * bm25[i] + 0.7 * float((vectors[i] @ q).max()) for i in window}
    hits = backend.search(PersonaQuery(vector=vector, text=text, mode="rescore", k=4, num_candidates=5,
                                       vector_weight=0.7, text_weight=0.3))
    assert [h.item_id for h in hits] == sorted(expected, key=lambda i: (-expected[i], i))[:4]
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.item_id], abs=1e-5)
        assert hit.scores["fused"] == hit.score and hit.scores["bm25"] == pytest.approx(bm25[hit.item_id])
        assert hit.scores["cosine"] == pytest.approx(float((vectors[hit.item_id] @ q).max()), abs=1e-5)
        assert hit.persona is not None and hit.evidence


def test_an_item_outside_the_window_is_never_returned(backend, encoder):
    """However close its personas are to the profile: the window is the keywords' (as on a cluster)."""
    text = "fit size"
    bm25 = best_bm25(backend, text)
    last = min(bm25, key=lambda i: (bm25[i], i))
    vector = backend.persona_vectors([last])[last][0]  # the profile is one of its personas
    wide = backend.search(PersonaQuery(vector=vector, text=text, mode="rescore", k=3, num_candidates=len(bm25),
                                       vector_weight=1.0, text_weight=0.0))
    narrow = backend.search(PersonaQuery(vector=vector, text=text, mode="rescore", k=2, num_candidates=2,
                                         vector_weight=1.0, text_weight=0.0))
    assert wide[0].item_id == last and last not in {h.item_id for h in narrow} and len(narrow) == 2


def test_filters_and_exclusions_hold_in_rescore_mode(backend, subset, encoder):
    items = read_jsonl(subset["items"])
    category = items[0]["categories"][-1]
    in_category = {i["item_id"] for i in items if category in i["categories"]}
    vector = encoder.encode(["comfortable"])[0]
    excluded = sorted(in_category)[:1]
    hits = backend.search(PersonaQuery(vector=vector, text="fit size petite", mode="rescore", k=10,
                                       num_candidates=20, filters={"categories": (category,)},
                                       exclude_ids=frozenset(excluded)))
    assert hits and {h.item_id for h in hits} <= in_category - set(excluded)


def test_rescore_needs_keywords_and_takes_no_candidates():
    with pytest.raises(ConfigError, match="rescore mode needs keyword text"):
        PersonaQuery(vector=np.ones(4), mode="rescore")
    with pytest.raises(ConfigError, match="candidate ids are scored exactly"):
        PersonaQuery(vector=np.ones(4), mode="rescore", text="x", candidate_ids=("1",))
    with pytest.raises(ConfigError, match="needs keywords"):
        SearchOptions(mode="rescore")
    with pytest.raises(ConfigError, match="mode 'exact' scores personas alone"):
        SearchOptions(mode="exact", keywords="soft")


def test_cli_rescore_prints_the_components(subset, subset_index):
    args = ["recommend", "--index", subset_index, "--interactions", subset["interactions"], "--user", USER]
    out = json.loads(run_cli(*args, "--mode", "rescore", "--query", "fit size", "--window", "6", "-k", "3",
                             "--keyword-weight", "0.2", "--persona-weight", "0.8", "--json").stdout)
    hits = out["hits"]
    assert 1 <= len(hits) <= 3
    for hit in hits:
        assert set(hit["scores"]) == {"cosine", "bm25", "fused"}
        assert hit["score"] == pytest.approx(0.2 * hit["scores"]["bm25"] + 0.8 * hit["scores"]["cosine"], abs=1e-5)
    text = run_cli(*args, "--mode", "rescore", "--query", "fit size", "-k", "2").stdout
    assert "bm25" in text and "fused" in text


@pytest.mark.parametrize("extra, message", [
    (["--window", "5"], "--window is the rescore window"),
    (["--mode", "rescore", "--query", "dress", "--num-candidates", "50"], "set its size with --window"),
    (["--mode", "rescore", "--query", "dress", "--fusion", "rrf"], "--fusion is for --mode knn"),
    (["--fusion", "rrf"], "only act with --query"),
    (["--keyword-weight", "0.9"], "only act with --query"),
    (["--text-weight", "0.9"], "--text-weight was renamed --keyword-weight"),
    (["--vector-weight", "0.9"], "--vector-weight was renamed --persona-weight"),
    (["--mode", "rescore"], "needs keywords"),
    (["--mode", "exact", "--query", "dress"], "mode 'exact' scores personas alone"),
])
def test_options_that_would_do_nothing_are_refused(subset, subset_index, extra, message):
    result = run_cli("recommend", "--index", subset_index, "--history", read_jsonl(subset["items"])[0]["item_id"],
                     *extra, expect=64)
    assert message in result.output


def test_rrf_scores_print_with_enough_digits_to_tell_hits_apart(subset, subset_index):
    out = run_cli("recommend", "--index", subset_index, "--interactions", subset["interactions"], "--user", USER,
                  "--query", "dress", "--fusion", "rrf", "-k", "4").stdout
    shown = [line.split("score ", 1)[1].split()[0] for line in out.splitlines() if "score " in line]
    assert len(shown) >= 3 and len(set(shown)) == len(shown), out


@pytest.mark.parametrize("engine, version, weight", [("opensearch", "2.19.0", 0.3), ("opensearch", "3.5.0", 0.66),
                                                     ("es", "8.19.0", 0.3)])
def test_a_dry_run_prints_one_rescore_request_then_the_explanations(engine, version, weight):
    """One search with the BM25 query and the rescore section, then the exact request for the chosen items'
    personas and their BM25 (inner hits in a rescore query are dropped by the engines). OpenSearch 3.x scores
    BM25 without the k1 + 1 factor: its weight carries 2.2 (0.3 x 2.2 = 0.66)."""
    out = run_cli("recommend", "--engine", engine, "--index", "items", "--dry-run", "--assume-version", version,
                  "--text", "petite", "--query", "soft", "--mode", "rescore", "--window", "30",
                  "--keyword-weight", "0.3", "--persona-weight", "0.7").stdout
    requests = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    at = next(n for n, r in enumerate(requests) if "rescore" in r["body"])  # after the encoder-name lookup
    first, requests = requests[at]["body"], requests[at:]
    assert first["rescore"]["window_size"] == 30 and first["size"] == 10
    assert first["rescore"]["query"]["query_weight"] == pytest.approx(weight)
    assert first["rescore"]["query"]["rescore_query_weight"] == 0.7
    assert len(requests) == 3 and "inner_hits" in json.dumps(requests[1]["body"])
