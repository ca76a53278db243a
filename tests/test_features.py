"""`p4r features` and p4r_search.features against the real subset index and the packaged encoder; the SVMlight
file read by scikit-learn and trained on by a real LightGBM ranker."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import read_jsonl, run_cli, write_jsonl

from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.feature_files import svmlight_line
from p4r_search.features import FEATURE_IDS, FEATURES, NO_SECOND, Candidate, FeatureExtractor
from p4r_search.recommend import Recommender, SearchOptions, UserInput


@pytest.fixture(scope="module")
def backend(subset_index):
    return EmbeddedBackend(subset_index)


@pytest.fixture(scope="module")
def extractor(backend, encoder):
    return FeatureExtractor(backend, encoder)


def history_of(subset, user_id: str) -> tuple[str, ...]:
    rows = sorted((r for r in read_jsonl(subset["interactions"]) if r["user_id"] == user_id), key=lambda r: r["timestamp"])
    return tuple(r["item_id"] for r in rows)


def test_best_cosine_is_what_recommend_and_explain_give(backend, encoder, extractor, subset):
    user = UserInput(history=history_of(subset, "demo-petite-dresses"))
    items = backend.item_ids()
    found = extractor.features(user, items)
    recommender = Recommender(backend, encoder=encoder)
    hits = recommender.recommend(user, SearchOptions(k=len(items), mode="exact", candidate_ids=tuple(items),
                                                     include_seen=True))
    assert {h.item_id for h in hits} == set(items)
    for hit in hits:
        f = found[hit.item_id].values
        assert f["best_cosine"] == hit.score and found[hit.item_id].persona_id == hit.persona.persona_id
        assert f["best_support"] == hit.persona.support
        assert f["second_cosine"] <= f["best_cosine"] and f["in_index"] == 1
        assert f["n_personas"] == len(backend.item_card(hit.item_id).personas)
        assert f["has_rating"] == 0 and f["best_rating"] == 0  # no ratings given: the index stores none
        assert all(math.isfinite(v) for v in f.values()) and list(f) == list(FEATURES)
    item = hits[0].item_id
    explained = recommender.explain(user, item)
    scores = [s.cosine for s in explained.persona_scores]
    assert found[item].values["best_cosine"] == pytest.approx(scores[0], abs=1e-6)
    second = scores[1] if len(scores) > 1 else NO_SECOND
    assert found[item].values["second_cosine"] == pytest.approx(second, abs=1e-6)


def test_single_vector_cosine_and_rating_from_evidence(backend, encoder, subset):
    ratings = {r["review_id"]: r["rating"] for r in read_jsonl(subset["reviews"]) if r.get("rating") is not None}
    extractor = FeatureExtractor(backend, encoder, ratings=ratings)
    user = UserInput(history=history_of(subset, "demo-casual-denim"))
    recommender = Recommender(backend, encoder=encoder)
    profile = recommender.profile(user)
    item = backend.item_ids()[0]
    found = extractor.features(user, [item])[item]
    vectors = backend.persona_vectors([item])[item]
    mean = vectors.mean(axis=0)
    assert found.values["single_cosine"] == pytest.approx(float(mean / np.linalg.norm(mean) @ profile), abs=1e-5)
    payload = [json.loads(p)["persona"] for p in backend.vectors().item_payloads(item)]
    evidence = next(p["evidence_review_ids"] for p in payload if p["persona_id"] == found.persona_id)
    assert found.values["has_rating"] == 1
    assert found.values["best_rating"] == pytest.approx(np.mean([ratings[r] for r in evidence if r in ratings]))


def persona_words(backend, item_id: str) -> set[str]:
    texts = " ".join(f"{p.persona.name} {p.persona.description} {p.persona.rationale}"
                     for p in backend.item_card(item_id).personas)
    return set(re.findall(r"[a-z]+", texts.lower()))


def test_bm25_of_the_users_words(backend, extractor):
    items = backend.item_ids()
    words = {i: persona_words(backend, i) for i in items}
    # a word of one item's persona text that no other item's has (its stem neither, roughly: 5-letter prefix)
    item, word = next((i, w) for i in items for w in sorted(words[i]) if len(w) >= 6
                      and not any(x[:5] == w[:5] for j in items if j != i for x in words[j]))
    found = extractor.features(UserInput(text=f"I want something {word}"), items)
    assert found[item].values["bm25"] > 0
    others = [i for i in items if i != item and not ({"i", "want", "something"} & words[i])]
    assert others and all(found[i].values["bm25"] == 0 for i in others)
    nothing = extractor.features(UserInput(text="zzqxv"), items)
    assert all(f.values["bm25"] == 0 for f in nothing.values())


def test_unknown_candidate_is_a_row_with_in_index_0(backend, extractor):
    known = backend.item_ids()[0]
    rows = extractor.rows(UserInput(text="a warm sweater"), [Candidate(item_id="no-such-item", score=2.5, label=1),
                                                            Candidate(item_id=known)], user_id="u", qid=7)
    assert [r.item_id for r in rows] == ["no-such-item", known] and {r.qid for r in rows} == {7}
    assert rows[0].features == dict.fromkeys(FEATURES, 0.0) and rows[0].persona_id is None
    assert rows[0].team_score == 2.5 and rows[0].label == 1 and rows[1].features["in_index"] == 1
    assert svmlight_line(rows[0]).startswith("1 qid:7 1:2.5 2:0 3:0 ")
    assert svmlight_line(rows[0]).rstrip().endswith("# u no-such-item")


# --- the command, and a real ranker trained on its file ------------------------------------------------
def leave_one_out_lines(backend, subset) -> list[dict]:
    """Per user and per cut: the history so far, and every unseen item as a candidate, the next one labelled
    1 (the held-out next interaction); the team's score is the item's review count (a popularity ranker)."""
    items = backend.item_ids()
    popularity = Counter(r["item_id"] for r in read_jsonl(subset["reviews"]))
    lines = []
    for user in sorted({r["user_id"] for r in read_jsonl(subset["interactions"])}):
        history = [i for i in history_of(subset, user) if i in items]
        for cut in range(1, len(history)):
            seen = set(history[:cut])
            candidates = [{"item_id": i, "score": float(popularity[i]), "label": int(i == history[cut])}
                          for i in items if i not in seen]
            lines.append({"history": history[:cut], "candidates": candidates})
    return lines


def test_cli_writes_both_formats_and_lightgbm_ranks_with_them(backend, subset_index, subset, tmp_path):
    from sklearn.datasets import load_svmlight_file

    lines = leave_one_out_lines(backend, subset)
    assert len(lines) >= 4
    lines.append({"history": lines[0]["history"], "candidates": [{"item_id": "not-indexed", "label": 0}]})
    candidates = write_jsonl(tmp_path / "candidates.jsonl", lines)
    jsonl, svm = tmp_path / "rows.jsonl", tmp_path / "rows.svm"
    result = run_cli("features", "--index", subset_index, "--candidates", candidates, "--jsonl", jsonl, "--svmlight", svm)
    rows = read_jsonl(jsonl)
    assert len(rows) == sum(len(line["candidates"]) for line in lines) and f"{len(rows)} row(s)" in result.output
    assert "1 candidate row(s) not in the index" in result.output
    X, y, qid = load_svmlight_file(str(svm), query_id=True, n_features=max(FEATURE_IDS.values()))
    X = X.toarray()
    assert list(qid) == [r["qid"] for r in rows] and list(y) == [r["label"] for r in rows]
    for n, row in enumerate(rows):
        assert X[n, 0] == (row["team_score"] or 0.0)
        assert [X[n, FEATURE_IDS[f] - 1] for f in FEATURES] == [row["features"][f] for f in FEATURES]
    train_and_rank(X, y, qid)


def train_and_rank(X: np.ndarray, y: np.ndarray, qid: np.ndarray) -> None:
    import lightgbm

    groups = [len(list(g)) for _, g in __import__("itertools").groupby(qid)]
    ranker = lightgbm.LGBMRanker(objective="lambdarank", n_estimators=20, learning_rate=0.1, min_child_samples=1,
                                 min_data_in_bin=1, num_leaves=4, verbose=-1, random_state=0, n_jobs=1)
    ranker.fit(X, y, group=groups)
    scores = ranker.predict(X)
    assert scores.shape == (len(y),) and np.isfinite(scores).all()
    persona_features = [FEATURE_IDS[f] - 1 for f in FEATURES if f != "in_index"]
    assert ranker.feature_importances_[persona_features].sum() > 0
    start = 0
    for size in groups:  # each query's ranking is its rows by predicted score, best first
        part = scores[start:start + size]
        order = np.argsort(-part, kind="stable")
        assert (np.diff(part[order]) <= 0).all() and sorted(order.tolist()) == list(range(size))
        start += size


def test_cli_reads_users_from_interactions(subset_index, subset, tmp_path, backend, encoder):
    user = "demo-petite-dresses"
    items = backend.item_ids()[:3]
    candidates = write_jsonl(tmp_path / "c.jsonl", [{"user_id": user, "candidates": [{"item_id": i} for i in items]}])
    out = tmp_path / "rows.jsonl"
    run_cli("features", "--index", subset_index, "--candidates", candidates, "--interactions", subset["interactions"],
            "--jsonl", out)
    rows = read_jsonl(out)
    expected = FeatureExtractor(backend, encoder).rows(UserInput(history=history_of(subset, user)),
                                                       [Candidate(item_id=i) for i in items], user_id=user)
    assert rows == [r.model_dump(mode="json") for r in expected]
    assert not list(tmp_path.glob(".*tmp*"))  # written aside and renamed


def test_cli_bad_line_names_file_and_line(subset_index, tmp_path):
    candidates = tmp_path / "c.jsonl"
    candidates.write_text('{"history": ["1"], "candidates": [{"item_id": "1"}]}\n'
                          '{"history": ["1"], "candidates": [{"item_id": "1", "score": "high"}]}\n', encoding="utf-8")
    out = tmp_path / "rows.jsonl"
    result = run_cli("features", "--index", subset_index, "--candidates", candidates, "--jsonl", out, expect=65)
    assert f"{candidates}:2: field 'candidates.0.score'" in result.output and not out.exists()


def test_cli_unknown_user_and_no_output(subset_index, subset, tmp_path):
    candidates = write_jsonl(tmp_path / "c.jsonl", [{"user_id": "nobody", "candidates": [{"item_id": "1"}]}])
    result = run_cli("features", "--index", subset_index, "--candidates", candidates, "--interactions",
                     subset["interactions"], "--svmlight", tmp_path / "o.svm", expect=66)
    assert f"{candidates}:1: user 'nobody' has no history" in result.output and not (tmp_path / "o.svm").exists()
    result = run_cli("features", "--index", subset_index, "--candidates", candidates, expect=64)
    assert "give --jsonl OUT and/or --svmlight OUT" in result.output


def test_cli_user_id_without_a_history_source(subset_index, tmp_path):
    import shutil

    index = shutil.copytree(subset_index, tmp_path / "idx")  # no store beside it (the serve tests make one there)
    candidates = write_jsonl(tmp_path / "c.jsonl", [{"user_id": "u1", "candidates": [{"item_id": "1"}]}])
    result = run_cli("features", "--index", index, "--candidates", candidates, "--jsonl", tmp_path / "o", expect=64)
    assert "needs --history-db or --interactions" in result.output


def test_feature_ids_are_fixed():
    """The order docs/ltr.md documents: the team's score is 1, p4r's features 2 to 10."""
    assert FEATURE_IDS == {name: n for n, name in enumerate(FEATURES, start=2)}
    table = (Path(__file__).resolve().parents[1] / "docs" / "ltr.md").read_text(encoding="utf-8")
    assert all(f"| {n} | `{name}` |" in table for name, n in FEATURE_IDS.items())
