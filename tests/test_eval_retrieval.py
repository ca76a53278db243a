"""`p4r eval retrieval`: the hold-out split, the leakage guard, and a small end-to-end run on real reviews.

Everything is real: the packaged encoder, the extractive generator, bm25s, and reviews from examples/
(the CC0 clothing data). The slice is small (14 items, 10 reviews each) to keep the CPU cost down.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, read_jsonl, run_cli, write_jsonl

from p4r_search.catalog import Catalog, load_catalog
from p4r_search.errors import ConfigError, InputError
from p4r_search.evaluation.bootstrap import paired_difference
from p4r_search.evaluation.embedding_cache import CachedEncoder
from p4r_search.evaluation.holdout import holdout_split
from p4r_search.evaluation.retrieval import (
    COMPARISONS,
    RANKERS,
    RetrievalConfig,
    check_no_leakage,
    run_retrieval,
)
from p4r_search.io import LineReader
from p4r_search.models import Item, Review
from p4r_search.personas.runner import read_personas

N_ITEMS, REVIEWS_PER_ITEM = 14, 10


def toy_catalog(sizes: dict[str, int]) -> Catalog:
    catalog = Catalog()
    for item_id, n in sizes.items():
        catalog.items[item_id] = Item(item_id=item_id, title=f"Item {item_id}")
        catalog.reviews[item_id] = [Review(review_id=f"{item_id}-{i:02d}", item_id=item_id, text=f"review {i}")
                                    for i in range(n)]
    return catalog


def test_holdout_split_sizes_and_determinism():
    catalog = toy_catalog({"a": 10, "b": 4, "c": 5, "d": 23})
    split = holdout_split(catalog, fraction=0.2, min_reviews=5, seed=7)
    held = {item_id: sum(q.item_id == item_id for q in split.queries) for item_id in catalog.items}
    assert held == {"a": 2, "b": 0, "c": 1, "d": 4}
    assert split.items_without_queries == ("b",)
    for item_id, reviews in catalog.reviews.items():  # train and queries partition each item's reviews
        train_ids = {r.review_id for r in split.train.reviews[item_id]}
        assert train_ids.isdisjoint(split.held_out_ids)
        assert train_ids | {q.review_id for q in split.queries if q.item_id == item_id} == {r.review_id for r in reviews}

    reordered = toy_catalog({"d": 23, "c": 5, "a": 10, "b": 4})  # another item order: the same split
    assert holdout_split(reordered, fraction=0.2, min_reviews=5, seed=7).held_out_ids == split.held_out_ids
    assert holdout_split(catalog, fraction=0.2, min_reviews=5, seed=8).held_out_ids != split.held_out_ids
    with pytest.raises(ConfigError):
        holdout_split(catalog, fraction=1.0)


@pytest.fixture(scope="module")
def slice_dir(tmp_path_factory) -> Path:
    """The first REVIEWS_PER_ITEM reviews of N_ITEMS example items."""
    folder = tmp_path_factory.mktemp("retrieval-data")
    items = read_jsonl(EXAMPLES / "items.jsonl")[:N_ITEMS]
    ids = {i["item_id"] for i in items}
    counts = dict.fromkeys(ids, 0)
    reviews = []
    for review in read_jsonl(EXAMPLES / "reviews.jsonl"):
        if review["item_id"] in ids and counts[review["item_id"]] < REVIEWS_PER_ITEM:
            counts[review["item_id"]] += 1
            reviews.append(review)
    write_jsonl(folder / "items.jsonl", items)
    write_jsonl(folder / "reviews.jsonl", reviews)
    return folder


@pytest.fixture(scope="module")
def run_out(slice_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("retrieval-out")
    run_cli("eval", "retrieval", "--data", slice_dir, "--out", out, "--no-progress")
    return out


def test_report_shape(run_out):
    report = json.loads((run_out / "results.json").read_text())
    assert set(report) == {"config", "results", "summary"}
    assert report["config"]["generator"] == "extractive" and report["config"]["model"]
    assert [r["reranker"] for r in report["results"]] == list(RANKERS)
    for row in report["results"]:
        assert (row["task"], row["split"], row["candidates"]) == ("retrieval", "test", "none")
        assert 0 <= row["NDCG@10"] <= row["Recall@10"] <= row["Recall@20"] <= 1
    s = report["summary"]
    assert (s["items"], s["reviews"], s["queries"]) == (N_ITEMS, N_ITEMS * REVIEWS_PER_ITEM, N_ITEMS * 2)
    assert s["training_reviews"] == s["reviews"] - s["queries"]
    by_name = {r["reranker"]: r for r in report["results"]}
    for comparison, (base, other) in zip(s["comparisons"], COMPARISONS, strict=True):
        low, high = comparison["NDCG@10"]["ci95"]
        assert (comparison["base"], comparison["other"]) == (base, other)
        assert comparison["NDCG@10"]["other"] == pytest.approx(by_name[other]["NDCG@10"])
        assert low <= comparison["NDCG@10"]["difference"] <= high
    table = (run_out / "results.md").read_text()
    assert all(f"| {name} |" in table for name in RANKERS)


def test_rankers_find_the_reviewed_item_better_than_chance(run_out):
    """With 14 candidates a random order has expected MRR@10 of about 0.21 (sum of 1/r for r ≤ 10, over 14)."""
    chance = sum(1 / r for r in range(1, 11)) / N_ITEMS
    rows = {r["reranker"]: r for r in json.loads((run_out / "results.json").read_text())["results"]}
    for name in ("persona", "single", "bm25-reviews", "hybrid"):
        assert rows[name]["MRR@10"] > chance * 1.5, (name, rows[name]["MRR@10"])


def test_held_out_reviews_never_feed_personas(run_out, slice_dir):
    """The leakage check: recompute the split, then look at what every persona was built from and cites."""
    catalog = load_catalog(slice_dir / "items.jsonl", slice_dir / "reviews.jsonl", LineReader())
    split = holdout_split(catalog, **{k: getattr(RetrievalConfig(), k) for k in ("fraction", "min_reviews", "seed")})
    personas = read_personas(run_out / "personas.jsonl")
    assert set(personas) == set(catalog.items)
    for item_id, record in personas.items():
        assert set(record.used_review_ids) == {r.review_id for r in split.train.reviews[item_id]}
        for persona in record.personas:
            assert split.held_out_ids.isdisjoint(persona.evidence_review_ids)
            assert split.held_out_ids.isdisjoint(s.review_id for s in persona.evidence_snippets)

    leaky = read_personas(run_out / "personas.jsonl")
    item_id = next(iter(leaky))
    stolen = next(q.review_id for q in split.queries)
    leaky[item_id] = leaky[item_id].model_copy(update={"used_review_ids": [stolen]})
    with pytest.raises(InputError, match=f"held-out review '{stolen}'"):
        check_no_leakage(split, leaky, Path("personas.jsonl"))


def test_rerun_reuses_personas_and_vectors(run_out, slice_dir, encoder):
    catalog = load_catalog(slice_dir / "items.jsonl", slice_dir / "reviews.jsonl", LineReader())
    cached = CachedEncoder(encoder, run_out / "embeddings.sqlite")
    report = run_retrieval(catalog, run_out, cached)
    assert report.summary["personas_generated_now"] == 0 and cached.misses == 0 and cached.hits > 0
    first = json.loads((run_out / "results.json").read_text())["results"]
    assert report.results == first  # deterministic


def test_paired_bootstrap_matches_scipy():
    """The interval agrees with scipy's percentile bootstrap of the mean difference (another resampler)."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(1)
    base = (rng.random(800) < 0.5).astype(float)
    other = np.where(rng.random(800) < 0.2, 1.0, base)  # other finds 20% of the misses too
    ours = paired_difference(base, other, resamples=4000, seed=3)
    theirs = bootstrap((other - base,), np.mean, method="percentile", n_resamples=4000, random_state=4)
    assert ours.difference == pytest.approx(float((other - base).mean()))
    assert ours.ci95 == pytest.approx(tuple(theirs.confidence_interval), abs=0.006)
    assert ours.ci95[0] > 0
    same = paired_difference(base, base)
    assert (same.difference, same.ci95) == (0.0, (0.0, 0.0))
