"""Pure functions: the neutral query, score fusion, profiles and the exact scorer."""

from __future__ import annotations

import numpy as np
import pytest

from p4r_search import fusion
from p4r_search.errors import ChoiceError, ConfigError
from p4r_search.profile import ProfileConfig, combine, history_profile, recency_weights
from p4r_search.query import Mode, PersonaQuery, item_filter_values, parse_filters
from p4r_search.scoring import ExactScorer

V = np.array([3.0, 4.0])


def test_query_normalises_the_vector_and_parses_choices():
    q = PersonaQuery(vector=V, mode="exact", fusion="rrf")
    assert np.allclose(q.vector, [0.6, 0.8]) and q.mode is Mode.EXACT


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "fuzzy"}, "invalid mode 'fuzzy'; valid choices: 'knn', 'exact', 'hybrid'"),
        ({"fusion": "max"}, "invalid fusion 'max'; valid choices: 'linear', 'rrf'"),
        ({"k": 0}, "k must be at least 1"),
        ({"k": 20, "num_candidates": 10}, "num_candidates (10) must be at least k (20)"),
        ({"mode": "hybrid"}, "hybrid mode needs keyword text"),
        ({"text": "red dress"}, "keyword text needs mode 'hybrid'"),
        ({"mode": "hybrid", "text": "x", "vector_weight": 0, "text_weight": 0}, "not both zero"),
        ({"filters": {"colour": ("red",)}}, "invalid filter field 'colour'"),
    ],
)
def test_query_rejects_bad_values_naming_them(kwargs, message):
    with pytest.raises((ConfigError, ChoiceError)) as err:
        PersonaQuery(vector=V, **kwargs)
    assert message in str(err.value)


def test_query_rejects_a_zero_vector():
    with pytest.raises(ConfigError, match="zero"):
        PersonaQuery(vector=np.zeros(3))


def test_parse_filters_groups_values_by_field():
    assert parse_filters(["categories=Dresses", "categories=Tops", "attributes.class=Knits"]) == {
        "categories": ("Dresses", "Tops"),
        "attributes.class": ("Knits",),
    }
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        parse_filters(["categories"])


def test_item_filter_values_cover_scalars_and_lists():
    tokens = item_filter_values("7", ["Dresses"], {"sizes": ["S", "M"], "petite": True, "nested": {"x": 1}})
    assert tokens == ["item_id=7", "categories=Dresses", "attributes.sizes=S", "attributes.sizes=M", "attributes.petite=true"]


def test_linear_fusion_minmax_normalises_each_list():
    fused = fusion.linear([{"a": 0.9, "b": 0.5}, {"b": 10.0, "c": 2.0}], [0.5, 0.5])
    assert fused == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})
    assert fusion.minmax({"a": 3.0, "b": 3.0}) == {"a": 1.0, "b": 1.0}


def test_rrf_fusion_uses_ranks_and_weights():
    fused = fusion.rrf([{"a": 0.9, "b": 0.5}, {"b": 10.0}], [1.0, 2.0], rank_constant=60)
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 2 / 61)
    assert fusion.ranked(fused) == ["b", "a"]


def test_recency_weights_are_gamma_to_the_age():
    assert recency_weights(3, 0.5).tolist() == [0.25, 0.5, 1.0]


def test_history_profile_keeps_the_last_n_and_favours_recent_items():
    old, recent = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    profile = history_profile([old, recent], ProfileConfig(last_n=10, gamma=0.5))
    assert profile[1] > profile[0] > 0 and np.isclose(np.linalg.norm(profile), 1)
    only_last = history_profile([old, old, recent], ProfileConfig(last_n=1))
    assert np.allclose(only_last, recent)


def test_combine_mixes_history_and_text():
    h, t = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert np.allclose(combine(h, t, ProfileConfig(text_weight=0.5)), np.array([1, 1]) / np.sqrt(2))
    assert np.allclose(combine(None, t, ProfileConfig()), t)
    with pytest.raises(ConfigError):
        combine(None, None, ProfileConfig())
    with pytest.raises(ConfigError, match="gamma"):
        ProfileConfig(gamma=0)


def test_exact_scorer_matches_a_brute_force_loop():
    rng = np.random.default_rng(1)
    mats = [rng.normal(size=(rng.integers(1, 7), 16)).astype(np.float32) for _ in range(300)]
    mats = [m / np.linalg.norm(m, axis=1, keepdims=True) for m in mats]
    ids = [f"item{i:03d}" for i in range(300)]
    scorer = ExactScorer(ids, mats)
    q = rng.normal(size=16).astype(np.float32)
    q /= np.linalg.norm(q)
    brute = sorted(((-float((m @ q).max()), i) for i, m in zip(ids, mats)))[:10]
    got = scorer.top_k(q, 10)
    assert [s.item_id for s in got] == [i for _, i in brute]
    assert [s.score for s in got] == pytest.approx([-s for s, _ in brute], abs=1e-6)
    best = got[0]
    assert best.persona_index == int(np.argmax(mats[ids.index(best.item_id)] @ q))
    excluded = scorer.top_k(q, 10, exclude=[best.item_id])
    assert best.item_id not in {s.item_id for s in excluded}
    assert [s.item_id for s in scorer.top_k(q, 2, candidates=["item005", "item001", "nope"])] == sorted(
        ["item005", "item001"], key=lambda i: -float((mats[ids.index(i)] @ q).max())
    )


def test_exact_scorer_breaks_ties_by_item_id():
    same = np.array([[1.0, 0.0]], dtype=np.float32)
    scorer = ExactScorer(["c", "a", "b"], [same, same, same])
    assert [s.item_id for s in scorer.top_k(np.array([1.0, 0.0]), 2)] == ["a", "b"]
