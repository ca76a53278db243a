"""The pure parts of `p4r eval loo`: candidate lists, reranking, fusion, max-sim, and repeatable CF fits."""

from __future__ import annotations

import numpy as np
import pytest

from p4r_search.evaluation.candidates import interaction_matrix, popularity_scores, top_k
from p4r_search.evaluation.generators import GeneratorSpec, TrainingData, scores
from p4r_search.evaluation.rerankers import evidence_fused_order, fuse, fused_order, max_sim, rerank, score_fused_order
from p4r_search.evaluation.variants import HistoryTable
from p4r_search.evaluation.vectors import PersonaVectors
from p4r_search.profile import ProfileConfig, history_profile, item_vector
from p4r_search.scoring import ExactScorer


def unit_rows(rng: np.random.Generator, n: int, dim: int = 8) -> np.ndarray:
    rows = rng.normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_top_k_excludes_history_and_breaks_ties_by_item_index():
    scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.5]])
    assert top_k(scores, [[1]], 3).tolist() == [[0, 2, 4]]


def test_top_k_equals_a_full_stable_sort_with_ties_and_history():
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 6, size=(40, 50)).astype(np.float64)  # many ties
    histories = [list(rng.choice(50, size=rng.integers(0, 48), replace=False)) for _ in range(40)]
    masked = scores.copy()
    for u, history in enumerate(histories):
        masked[u, history] = -np.inf
    for k in (1, 5, 20, 50):
        expected = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        assert np.array_equal(top_k(scores, histories, k), expected), k


def test_rerank_keeps_the_generator_order_among_equal_scores():
    candidates = np.array([[4, 2, 0, 3]])
    scores = np.array([[0.0, 0.0, 0.2, 0.0, 0.2]])
    assert rerank(scores, candidates).tolist() == [[4, 2, 0, 3]]
    assert rerank(np.zeros((1, 5)), candidates).tolist() == [[4, 2, 0, 3]]


def test_fusion_runs_from_the_generator_order_to_the_score_order():
    candidates = np.array([[0, 1, 2, 3]])
    scores = np.array([[0.1, 0.2, 0.3, 0.9]])
    assert fused_order(candidates, scores, 0.0).tolist() == [[0, 1, 2, 3]]
    assert fused_order(candidates, scores, 1.0).tolist() == [[3, 2, 1, 0]]
    fused = fuse(candidates, scores, 0.5)
    assert fused[0].tolist() == pytest.approx([0.5 * 1 + 0.5 * 0, 0.5 * 2 / 3 + 0.5 * 0.125,
                                               0.5 * 1 / 3 + 0.5 * 0.25, 0.5 * 0 + 0.5 * 1])


def test_score_fusion_runs_from_the_generator_scores_to_the_persona_scores():
    candidates = np.array([[0, 1, 2, 3]])
    generator = np.array([[0.9, 0.5, 0.45, 0.0]])  # item 0 far ahead, 1 and 2 nearly tied
    persona = np.array([[0.0, 0.1, 0.8, 0.3]])
    assert score_fused_order(candidates, persona, generator, 0.0).tolist() == [[0, 1, 2, 3]]
    assert score_fused_order(candidates, persona, generator, 1.0).tolist() == [[2, 3, 1, 0]]
    # where the rank fusion moves item 2 past item 0 at w = 0.5, the scores keep item 0 ahead of it
    assert fused_order(candidates, persona, 0.5).tolist()[0][0] == 2
    assert score_fused_order(candidates, persona, generator, 0.5).tolist() == [[2, 0, 1, 3]]


def test_evidence_fusion_lets_personas_move_long_tail_items_and_leaves_popular_ones():
    candidates = np.array([[0, 1, 2, 3]])
    persona = np.array([[0.0, 0.1, 0.2, 0.9]])
    evidence = np.array([1000.0, 1000.0, 1000.0, 0.0])  # items 0-2 are popular, item 3 has no interactions
    assert evidence_fused_order(candidates, persona, evidence, 1.0, half=1.0).tolist() == [[3, 0, 1, 2]]
    popular = np.full(4, 1000.0)
    assert evidence_fused_order(candidates, persona, popular, 1.0, half=1.0).tolist() == [[0, 1, 2, 3]]
    # with no CF evidence anywhere it is the rank fusion
    none = np.zeros(4)
    assert evidence_fused_order(candidates, persona, none, 0.5, half=3.0).tolist() == \
        fused_order(candidates, persona, 0.5).tolist()


def test_max_sim_and_profiles_agree_with_the_package_scorer():
    rng = np.random.default_rng(0)
    sizes = [3, 1, 2, 4]
    vectors = unit_rows(rng, sum(sizes))
    personas = PersonaVectors(np.concatenate([[0], np.cumsum(sizes)]), vectors)
    groups = [vectors[s:e] for s, e in zip(personas.offsets[:-1], personas.offsets[1:])]
    history = [3, 0, 2]
    table = HistoryTable.build(["u"], [history], [f"i{n}" for n in range(4)], {})
    profile = table.profiles(personas.item_vectors(), vectors, "items", last_n=2, gamma=0.5)[0]
    expected = history_profile([item_vector(groups[i]) for i in history], ProfileConfig(last_n=2, gamma=0.5))
    assert profile == pytest.approx(expected, abs=1e-6)
    reference = ExactScorer([f"i{n}" for n in range(4)], groups).item_scores(profile)
    assert max_sim(profile[None, :], personas)[0] == pytest.approx(reference, abs=1e-6)


def test_popularity_counts_users_and_cf_fits_repeat_with_a_seed():
    histories = [[0, 1], [0, 2], [0, 1, 3], [1, 2], [0, 3], [2, 3]]
    train = interaction_matrix(histories, 5)
    assert popularity_scores(train, 2)[1].tolist() == [4, 3, 3, 3, 0]
    data = TrainingData(train, histories)
    for spec in (GeneratorSpec("bpr", {"factors": 4, "iterations": 20}), GeneratorSpec("als", {"factors": 4})):
        first, again = scores(spec, data, 6, seed=3), scores(spec, data, 6, seed=3)
        assert first.shape == (6, 5) and np.array_equal(first, again)
