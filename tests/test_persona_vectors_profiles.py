"""Persona vector kinds (text, evidence, blend), profile sources (items, reviews, both), and the candidate
reranker (a caller's ordered candidates fused with the persona score), on real reviews, the real encoder and
real embedded indexes; the cluster backends through the scripted stand-in of test_cluster_search (no
Elasticsearch or OpenSearch server can run here)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import read_jsonl, run_cli
from test_cluster_search import COSINE, ScriptedCluster

from p4r_search.backends.cluster import ClusterBackend
from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.clusters.model import Cluster, Distribution
from p4r_search.documents import build_documents
from p4r_search.errors import ChoiceError, ConfigError
from p4r_search.evaluation.metrics import evaluate
from p4r_search.evaluation.folds import Evaluator, Fold
from p4r_search.evaluation.rerankers import score_fused_order
from p4r_search.evaluation.variants import HistoryTable
from p4r_search.fusion import candidate_fusion, candidate_score_fusion
from p4r_search.models import ItemPersonas
from p4r_search.persona_vectors import embed_personas
from p4r_search.profile import ProfileConfig, history_profile, interaction_vector, item_vector
from p4r_search.recommend import Recommender, SearchOptions, UserInput


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def records(subset_personas):
    return [ItemPersonas.model_validate(r) for r in read_jsonl(subset_personas)]


@pytest.fixture(scope="module")
def review_texts(subset):
    return {r["review_id"]: r["text"] for r in read_jsonl(subset["reviews"])}


def test_the_three_kinds_are_text_evidence_centroid_and_their_blend(records, review_texts, encoder):
    personas = [p for r in records[:3] for p in r.personas]
    text, _ = embed_personas(personas, encoder, "text")
    evidence, fallbacks = embed_personas(personas, encoder, "evidence", review_texts, prior=0.0)
    blend, _ = embed_personas(personas, encoder, "blend", review_texts, prior=0.0)
    assert fallbacks == 0
    for n, persona in enumerate(personas):
        cited = encoder.encode([review_texts[r] for r in persona.evidence_review_ids])
        assert text[n] == pytest.approx(encoder.encode([persona.embedding_text])[0], abs=1e-5)
        assert evidence[n] == pytest.approx(unit(cited.mean(axis=0)), abs=1e-5)
        assert blend[n] == pytest.approx(unit(evidence[n] + text[n]), abs=1e-5)
    with pytest.raises(ConfigError, match="need the review texts"):
        embed_personas(personas, encoder, "evidence")
    items = [r.item_id for r in records[:3] for _ in r.personas]
    pulled, _ = embed_personas(personas, encoder, "evidence", review_texts, items=items, prior=3.0)
    for n, persona in enumerate(personas):
        cited = encoder.encode([review_texts[r] for r in persona.evidence_review_ids])
        item_ids = {r for p, i in zip(personas, items) if i == items[n] for r in p.evidence_review_ids}
        centroid = unit(encoder.encode([review_texts[r] for r in sorted(item_ids)]).mean(axis=0))
        assert pulled[n] == pytest.approx(unit(cited.sum(axis=0) + 3.0 * centroid), abs=1e-5)


def test_a_persona_whose_evidence_is_unknown_falls_back_to_its_text_and_is_counted(records, review_texts, encoder):
    record = records[0]
    known = {k: v for k, v in review_texts.items() if k not in record.personas[0].evidence_review_ids}
    (doc,) = build_documents([record], encoder, persona_vector="evidence", review_texts=known)
    assert doc.text_fallbacks == 1 and doc.persona_vector == "evidence"
    assert doc.vectors[0] == pytest.approx(encoder.encode([record.personas[0].embedding_text])[0], abs=1e-5)


def test_an_index_records_its_kind_and_refuses_another(subset, subset_personas, tmp_path):
    index = tmp_path / "idx"
    run_cli("index", "build", "--personas", subset_personas, "--items", subset["items"], "--index", index,
            "--persona-vector", "evidence", "--reviews", subset["reviews"], "--no-progress")
    assert EmbeddedBackend(index).meta.persona_vector == "evidence"
    assert EmbeddedBackend(index).meta.evidence_prior == 3.0  # the default
    other = run_cli("index", "build", "--personas", subset_personas, "--index", index, "--reviews", subset["reviews"],
                    "--evidence-prior", "0", "--no-progress", expect=64)
    assert "evidence prior 0.0; this index holds 3.0" in other.output
    info = run_cli("index", "info", "--index", index)
    assert "persona_vector: evidence" in info.output
    refused = run_cli("index", "build", "--personas", subset_personas, "--index", index, "--no-progress", expect=64)
    assert "note: text persona vectors; give --reviews" in refused.output  # auto, without --reviews
    assert "'text' persona vectors; this index holds 'evidence'" in refused.output
    auto = run_cli("index", "build", "--personas", subset_personas, "--index", tmp_path / "auto",
                   "--reviews", subset["reviews"], "--no-progress")
    assert "(evidence persona vectors)" in auto.output
    missing = run_cli("index", "build", "--personas", subset_personas, "--index", tmp_path / "other",
                      "--persona-vector", "blend", expect=64)
    assert "needs --reviews" in missing.output


def test_review_and_both_profiles_use_the_users_own_reviews(subset_index, encoder):
    backend = EmbeddedBackend(subset_index)
    history = tuple(backend.item_ids()[:3])
    reviews = {history[0]: "Runs small, order a size up.", history[2]: "Lovely colour, thin fabric."}
    items = [item_vector(backend.persona_vectors([i])[i]) for i in history]
    written = {i: encoder.encode([t])[0] for i, t in reviews.items()}
    for source in ("items", "reviews", "both"):
        config = ProfileConfig(last_n=10, gamma=0.65, source=source)
        profile = Recommender(backend, encoder=encoder, profile=config).profile(UserInput(history, reviews=reviews))
        expected = history_profile([interaction_vector(v, written.get(i), source) for i, v in zip(history, items)],
                                   config)
        assert profile == pytest.approx(expected, abs=1e-5)
    assert interaction_vector(items[1], None, "reviews") == pytest.approx(items[1])  # no review: the item
    with pytest.raises(ChoiceError, match="profile source"):
        ProfileConfig(source="ratings")


def test_the_evaluation_builds_profiles_as_serving_does():
    rng = np.random.default_rng(3)
    items, texts = unit(rng.normal(size=(6, 8))), unit(rng.normal(size=(4, 8)))
    histories = [[0, 3, 5, 1], [], [2]]
    review_row = {("u0", "i3"): 2, ("u0", "i1"): 0, ("u2", "i2"): 3}
    table = HistoryTable.build(["u0", "u1", "u2"], histories, [f"i{n}" for n in range(6)], review_row)
    for source in ("items", "reviews", "both"):
        profiles = table.profiles(items, texts, source, last_n=3, gamma=0.5)
        config = ProfileConfig(last_n=3, gamma=0.5, source=source)
        for u, user in ((0, "u0"), (2, "u2")):
            rows = [interaction_vector(items[i], texts[review_row[(user, f"i{i}")]] if (user, f"i{i}") in review_row
                                       else None, source) for i in histories[u]]
            assert profiles[u] == pytest.approx(history_profile(rows, config), abs=1e-6)
        assert not profiles[1].any()


def test_the_fast_evaluator_agrees_with_the_metrics_module():
    rng = np.random.default_rng(0)
    item_ids = [f"i{n}" for n in range(30)]
    targets = [item_ids[t] for t in rng.integers(0, 30, size=50)] + ["unknown"]
    fold = Fold("test", [f"u{n}" for n in range(51)], [[]] * 51, targets, None)
    order = np.stack([rng.permutation(30)[:20] for _ in range(51)])
    fast = Evaluator(fold, item_ids, (5, 10, 20))(order)
    reference = evaluate([[item_ids[i] for i in row] for row in order], [{t} for t in targets], (5, 10, 20))
    assert fast == pytest.approx({k: v for k, v in reference.items() if not k.startswith("Recall")})


def test_candidate_fusion_runs_from_the_callers_order_to_the_persona_order(subset_index, encoder):
    recommender = Recommender(EmbeddedBackend(subset_index), encoder=encoder)
    user = UserInput(text="a petite dress that fits")
    candidates = tuple(EmbeddedBackend(subset_index).item_ids()[:6])
    exact = {h.item_id: h.score for h in recommender.recommend(user, SearchOptions(k=6, mode="exact",
                                                                                    candidate_ids=candidates))}
    keep = recommender.recommend(user, SearchOptions(k=6, candidate_ids=candidates, candidate_weight=0.0))
    assert [h.item_id for h in keep] == list(candidates)
    alone = recommender.recommend(user, SearchOptions(k=6, candidate_ids=candidates, candidate_weight=1.0))
    assert [h.item_id for h in alone] == sorted(candidates, key=lambda i: -exact[i])
    mixed = recommender.recommend(user, SearchOptions(k=3, candidate_ids=candidates, candidate_weight=0.6))
    fused = candidate_fusion(np.array([[exact[i] for i in candidates]]), 0.6)[0]
    assert [h.item_id for h in mixed] == [candidates[n] for n in np.argsort(-fused, kind="stable")[:3]]
    top = mixed[0]
    assert top.score == pytest.approx(top.scores["fused"]) and top.scores["cosine"] == pytest.approx(exact[top.item_id])
    assert top.scores["candidate_rank"] == candidates.index(top.item_id) + 1 and top.persona is not None
    with pytest.raises(ConfigError, match="needs candidates"):
        SearchOptions(candidate_weight=0.5)


def test_candidate_score_fusion_fuses_the_callers_scores_as_the_evaluation_tuned_them(subset_index, encoder):
    recommender = Recommender(EmbeddedBackend(subset_index), encoder=encoder)
    user = UserInput(text="a petite dress that fits")
    candidates = tuple(EmbeddedBackend(subset_index).item_ids()[:6])
    given = (9.0, 1.0, 8.5, 0.5, 0.4, 0.0)  # the team's own scores: two clear leaders, in the order 0, 2
    exact = {h.item_id: h.score for h in recommender.recommend(user, SearchOptions(k=6, mode="exact",
                                                                                    candidate_ids=candidates))}
    hits = recommender.recommend(user, SearchOptions(k=6, candidate_ids=candidates, candidate_weight=0.0,
                                                     candidate_scores=given))
    assert [h.item_id for h in hits][:2] == [candidates[0], candidates[2]]
    mixed = recommender.recommend(user, SearchOptions(k=6, candidate_ids=candidates, candidate_weight=0.4,
                                                      candidate_scores=given))
    fused = candidate_score_fusion(np.array([given]), np.array([[exact[i] for i in candidates]]), 0.4)[0]
    assert [h.item_id for h in mixed] == [candidates[n] for n in np.argsort(-fused, kind="stable")]
    assert mixed[0].scores["candidate_score"] == given[candidates.index(mixed[0].item_id)]
    assert mixed[0].score == pytest.approx(float(fused.max()))
    # the evaluation's fusion-score is this function: the weight it tunes is the one to pass here
    order = score_fused_order(np.arange(6)[None, :], np.array([[exact[i] for i in candidates]]),
                              np.array([given]), 0.4)
    assert [candidates[n] for n in order[0]] == [h.item_id for h in mixed]
    for bad, why in (((1.0, 2.0), "one score per candidate"), ((float("inf"),) * 6, "finite"),
                     ((float("nan"),) * 6, "finite")):
        with pytest.raises(ConfigError, match=why):
            SearchOptions(candidate_ids=candidates, candidate_weight=0.5, candidate_scores=bad)
    with pytest.raises(ConfigError, match="need a candidate weight"):
        SearchOptions(candidate_ids=candidates, candidate_scores=given)


@pytest.mark.parametrize("cluster", [Cluster(Distribution.ELASTICSEARCH, (8, 17, 0), "basic"),
                                     Cluster(Distribution.OPENSEARCH, (2, 19, 0))])
def test_candidate_fusion_on_the_cluster_backends(cluster, encoder):
    """Cosines A 0.2, B 0.9, C 0.5 (the stand-in's exact script_score); candidates in the order A, B, C."""
    backend = ClusterBackend(ScriptedCluster(), cluster, "items")
    hits = Recommender(backend, encoder=encoder).recommend(
        UserInput(text="soft"), SearchOptions(k=3, candidate_ids=("A", "B", "C"), candidate_weight=0.5))
    # rank parts 1, 0.5, 0; persona parts 0, 1, 3/7: fused A 0.5, B 0.75, C 3/14
    assert [h.item_id for h in hits] == ["B", "A", "C"]
    assert [h.score for h in hits] == pytest.approx([0.75, 0.5, 3 / 14])
    assert [h.scores["cosine"] for h in hits] == pytest.approx([COSINE["B"], COSINE["A"], COSINE["C"]])
