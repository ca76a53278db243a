"""The ranking metrics against ir-measures (trec_eval's implementation, via pytrec_eval) on the same runs."""

from __future__ import annotations

import random

import ir_measures
import pytest
from ir_measures import NDCG, RR, R, Success

from p4r_search.errors import ConfigError
from p4r_search.evaluation.metrics import evaluate, per_query, rank_by_score

KS = (1, 3, 5, 10, 20)


def reference(ranked: list[list[str]], relevant: list[set[str]], ks=KS) -> dict[str, float]:
    """The same runs through ir-measures; scores strictly decrease with rank, so no tie-breaking is involved."""
    qrels = [ir_measures.Qrel(str(q), d, 1) for q, docs in enumerate(relevant) for d in docs]
    run = [ir_measures.ScoredDoc(str(q), d, float(len(items) - r)) for q, items in enumerate(ranked)
           for r, d in enumerate(items)]
    measures = {}
    for k in ks:
        measures |= {f"HR@{k}": Success @ k, f"MRR@{k}": RR @ k, f"NDCG@{k}": NDCG @ k, f"Recall@{k}": R @ k}
    per_q = {name: {} for name in measures}
    by_measure = {m: name for name, m in measures.items()}
    for metric in ir_measures.iter_calc(list(measures.values()), qrels, run):
        per_q[by_measure[metric.measure]][metric.query_id] = metric.value
    # trec_eval leaves out a query whose run is empty; it scores 0 on every measure
    return {name: sum(values.get(str(q), 0.0) for q in range(len(ranked))) / len(ranked)
            for name, values in per_q.items()}


def random_runs(seed: int, queries: int = 60) -> tuple[list[list[str]], list[set[str]]]:
    rng = random.Random(seed)
    catalog = [f"i{n:03d}" for n in range(80)]
    ranked, relevant = [], []
    for _ in range(queries):
        length = rng.choice([0, 1, 3, 7, 20, 25])  # short lists, empty lists and lists longer than every k
        ranked.append(rng.sample(catalog, length))
        pool = ranked[-1] + catalog if rng.random() < 0.7 else catalog  # often relevant inside the list
        relevant.append(set(rng.sample(pool[:30], rng.choice([1, 1, 1, 2, 4]))))
    return ranked, relevant


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_ir_measures_on_random_runs(seed):
    ranked, relevant = random_runs(seed)
    ours = evaluate(ranked, relevant, KS)
    theirs = reference(ranked, relevant)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-9), name


def test_one_relevant_item_by_hand():
    values = per_query([["a", "b", "c", "d", "e", "f"], ["x", "y"], ["a", "b"]], [{"c"}, {"b"}, {"q"}], ks=(2, 5))
    assert values["HR@2"].tolist() == [0.0, 0.0, 0.0]
    assert values["HR@5"].tolist() == [1.0, 0.0, 0.0]  # "b" is not in the second list at all
    assert values["MRR@5"].tolist() == pytest.approx([1 / 3, 0.0, 0.0])
    assert values["NDCG@5"].tolist() == pytest.approx([0.5, 0.0, 0.0])  # 1 / log2(3 + 1)


def test_several_relevant_items_and_short_list():
    values = per_query([["a", "x", "b"]], [{"a", "b", "c"}], ks=(5,))
    ideal = 1 + 1 / 1.5849625007211563 + 0.5
    assert values["NDCG@5"][0] == pytest.approx((1 + 0.5) / ideal)
    assert values["Recall@5"][0] == pytest.approx(2 / 3)
    assert evaluate([["a", "x", "b"]], [{"a", "b", "c"}], ks=(5,)) == pytest.approx(
        {"HR@5": 1.0, "MRR@5": 1.0, "NDCG@5": 1.5 / ideal, "Recall@5": 2 / 3}
    )


def test_repeated_id_counts_once_at_its_first_rank():
    assert per_query([["a", "a", "b"]], [{"b"}], ks=(2,))["HR@2"][0] == 1.0


def test_ties_are_broken_by_id_and_the_metrics_follow_that_order():
    scores = {"b": 0.5, "a": 0.5, "c": 0.9, "d": 0.1}
    assert rank_by_score(scores) == ["c", "a", "b", "d"]
    ranked = [rank_by_score(scores)]
    assert evaluate(ranked, [{"b"}], ks=(2, 3))["HR@2"] == 0.0
    assert evaluate(ranked, [{"b"}], ks=(2, 3)) == pytest.approx(reference(ranked, [{"b"}], ks=(2, 3)))


def test_tied_scores_straight_into_ir_measures_agree_where_the_tie_order_does_not_matter():
    # both tied items are relevant, so any tie order gives the same values
    scores = {"a": 0.5, "b": 0.5, "c": 0.9, "d": 0.1}
    qrels = [ir_measures.Qrel("0", "a", 1), ir_measures.Qrel("0", "b", 1)]
    run = [ir_measures.ScoredDoc("0", d, s) for d, s in scores.items()]
    theirs = ir_measures.calc_aggregate([NDCG @ 3, RR @ 3, R @ 3], qrels, run)
    ours = evaluate([rank_by_score(scores)], [{"a", "b"}], ks=(3,))
    assert ours["NDCG@3"] == pytest.approx(theirs[NDCG @ 3])
    assert ours["MRR@3"] == pytest.approx(theirs[RR @ 3])
    assert ours["Recall@3"] == pytest.approx(theirs[R @ 3])


def test_a_query_without_relevant_items_is_an_error():
    with pytest.raises(ConfigError, match="no relevant item"):
        evaluate([["a"]], [set()])
    with pytest.raises(ConfigError, match="no queries"):
        evaluate([], [])
    with pytest.raises(ConfigError, match="2 ranked lists but 1"):
        evaluate([["a"], ["b"]], [{"a"}])
