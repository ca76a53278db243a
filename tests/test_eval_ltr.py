"""The learned reranker (evaluation/ltr.py): pooling, the feature table, and LambdaRank fits on a known rule."""

from __future__ import annotations

import numpy as np
import pytest

from p4r_search.errors import ConfigError
from p4r_search.evaluation.ltr import (
    LearnedRanker,
    RankerFileError,
    RankingTable,
    candidate_pool,
    fit_ranker,
    ranking_table,
)

P = 30  # pool width of the synthetic cases
FAST = {"num_iterations": 60}  # for the fits whose quality does not matter


def test_candidate_pool_reads_the_lists_rank_by_rank_and_pads():
    a = np.array([[1, 2, 3], [7, 8, 9]])
    b = np.array([[2, 4, 1], [9, 8, 7]])
    pool = candidate_pool({"a": a, "b": b})
    assert pool.dtype == np.int64
    # case 0: a0=1 b0=2 | a1=2 (seen) b1=4 | a2=3 b2=1 (seen); case 1: 7 9 | 8 8 | 9 7
    assert pool.tolist() == [[1, 2, 4, 3], [7, 9, 8, -1]]
    assert candidate_pool({"b": b, "a": a}).tolist() == [[2, 1, 4, 3], [9, 7, 8, -1]]
    # lists of different depths: the shorter one stops contributing
    assert candidate_pool({"a": a, "c": np.array([[5], [6]])}).tolist() == [[1, 5, 2, 3], [7, 6, 8, 9]]


def test_ranking_table_values_at_known_positions():
    lists = {"a": np.array([[1, 2, 3], [7, 8, 9]]), "b": np.array([[2, 4, 1], [9, 8, 7]])}
    pool = candidate_pool(lists)  # [[1, 2, 4, 3], [7, 9, 8, -1]]
    cf = np.arange(20, dtype=np.float64).reshape(2, 10) / 10  # cf[c, i] = c + i / 10
    popularity = np.arange(10, dtype=np.int64) * 100
    table = ranking_table(pool, {"cf": cf}, lists, {"popularity": popularity})
    assert table.names == ("cf", "rank:a", "rank:b", "popularity")
    assert table.features.shape == (2, 4, 4) and table.features.dtype == np.float32
    np.testing.assert_allclose(table.features[0, :, 0], [0.1, 0.2, 0.4, 0.3], rtol=1e-6)
    np.testing.assert_allclose(table.features[1, :3, 0], [1.7, 1.9, 1.8], rtol=1e-6)
    assert table.features[0, :, 1].tolist() == [0, 1, 3, 2]  # item 4 is not in list a: rank = k = 3
    assert table.features[0, :, 2].tolist() == [2, 0, 1, 3]  # item 3 is not in list b
    assert table.features[1, :3, 2].tolist() == [2, 0, 1]
    assert table.features[0, :, 3].tolist() == [100, 200, 400, 300]
    assert np.isnan(table.features[1, 3]).all()  # padding
    assert not np.isnan(table.features[:, :3]).any()
    with pytest.raises(ConfigError, match="repeat"):
        ranking_table(pool, {"popularity": cf}, lists, {"popularity": popularity})


def synthetic(cases: int, seed: int) -> tuple[RankingTable, np.ndarray]:
    """Pools of 25 to 30 items with f1, f2 and a useless f3; the target maximises 0.7*f1 + 0.3*f2 + noise.
    One case in twenty has its target outside the pool (or not a catalog item)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(25, P + 1, size=cases)
    pool = np.full((cases, P), -1, dtype=np.int64)
    features = np.full((cases, P, 3), np.nan, dtype=np.float32)
    targets = np.empty(cases, dtype=np.int64)
    for c, size in enumerate(sizes):
        pool[c, :size] = rng.choice(1000, size=size, replace=False)
        f = rng.normal(size=(size, 3))
        features[c, :size] = f
        targets[c] = pool[c, np.argmax(0.7 * f[:, 0] + 0.3 * f[:, 1] + rng.normal(scale=0.05, size=size))]
    missing = rng.random(cases) < 0.05
    targets[missing] = np.where(rng.random(missing.sum()) < 0.5, -1, 1000)
    return RankingTable(pool, features, ("f1", "f2", "f3")), targets


def hit_rate(ranked: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(ranked[:, 0] == targets))


def by_feature(table: RankingTable, name: str) -> np.ndarray:
    values = np.nan_to_num(table.features[:, :, table.names.index(name)], nan=-np.inf)
    return table.pool[np.arange(len(table.pool)), np.argmax(values, axis=1)][:, None]


@pytest.fixture(scope="module")
def data() -> dict:
    train, train_targets = synthetic(600, seed=1)
    test, test_targets = synthetic(400, seed=2)
    return {"train": train, "train_targets": train_targets, "test": test, "test_targets": test_targets,
            "full": fit_ranker(train, train_targets, ["f1", "f2", "f3"], seed=0)}


def test_the_ranker_learns_the_rule_and_loses_without_f1(data):
    full = data["full"]
    test, targets = data["test"], data["test_targets"]
    learned = hit_rate(full.order(test, 10), targets)
    singles = {name: hit_rate(by_feature(test, name), targets) for name in ("f1", "f2", "f3")}
    assert learned > max(singles.values()) + 0.15, (learned, singles)
    assert full.cv["cases_used"] + full.cv["cases_without_target"] == 600
    assert full.cv["cases_without_target"] > 0
    assert len(full.cv["folds"]) == 5 and 1 <= full.trees <= 500
    without_f1 = fit_ranker(data["train"], data["train_targets"], ["f2", "f3"], seed=0)
    assert without_f1.names == ("f2", "f3")
    assert hit_rate(without_f1.order(test, 10), targets) < learned - 0.2


def test_the_same_seed_gives_the_same_model(data):
    first, second = (fit_ranker(data["train"], data["train_targets"], ["f1", "f2", "f3"], folds=3, seed=7,
                                params=FAST) for _ in range(2))
    assert first.trees == second.trees and first.cv == second.cv
    assert np.array_equal(first.scores(data["test"]), second.scores(data["test"]))


def test_save_load_round_trip_and_bad_files(data, tmp_path):
    full = data["full"]
    path = tmp_path / "ranker.json"
    full.save(path)
    loaded = LearnedRanker.load(path)
    assert (loaded.names, loaded.trees, loaded.cv) == (full.names, full.trees, full.cv)
    assert np.array_equal(loaded.scores(data["test"]), full.scores(data["test"]))
    text = path.read_text(encoding="utf-8")
    for bad in (text[: len(text) // 2], text.replace('"version": 1', '"version": 9'), "[]",
                text.replace("Tree=", "Tre=")):
        path.write_text(bad, encoding="utf-8")
        with pytest.raises(RankerFileError, match=str(path)):
            LearnedRanker.load(path)
    with pytest.raises(RankerFileError, match="absent.json"):
        LearnedRanker.load(tmp_path / "absent.json")


def test_scores_use_columns_by_name(data):
    full, test = data["full"], data["test"]
    shuffled = RankingTable(test.pool, np.concatenate([test.features[:, :, ::-1], test.features[:, :, :1]], 2),
                            ("f3", "f2", "f1", "extra"))
    assert np.array_equal(full.scores(shuffled), full.scores(test))
    assert np.isneginf(full.scores(test)[test.pool < 0]).all()
    with pytest.raises(ConfigError, match="'f1'"):
        full.scores(RankingTable(test.pool, test.features[:, :, 1:], ("f2", "f3")))


def test_order_keeps_pool_order_among_ties_and_needs_k_items(data):
    ranker = fit_ranker(data["train"], data["train_targets"], ["f1", "f2", "f3"], folds=2, params=FAST)
    pool = np.array([[5, 3, 9, 1, -1], [2, 4, 6, 8, 0]])
    features = np.zeros((2, 5, 3), dtype=np.float32)  # every item scores the same
    features[0, 4] = np.nan
    table = RankingTable(pool, features, ("f1", "f2", "f3"))
    assert ranker.order(table, 4).tolist() == [[5, 3, 9, 1], [2, 4, 6, 8]]
    features[1, 2, 0] = 5.0  # item 6 now leads its case
    assert ranker.order(table, 3)[1].tolist() == [6, 2, 4]
    with pytest.raises(ValueError, match="case 0"):
        ranker.order(table, 5)
