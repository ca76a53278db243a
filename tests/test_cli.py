"""End to end through the real `p4r` CLI: real reviews → personas → real index → explained recommendations."""

from __future__ import annotations

import json

from conftest import read_jsonl, run_cli


def demo_history(subset, user):
    return [i["item_id"] for i in read_jsonl(subset["interactions"]) if i["user_id"] == user]


def test_personas_file_is_valid_and_complete(subset, subset_personas):
    records = read_jsonl(subset_personas)
    assert sorted(r["item_id"] for r in records) == sorted(i["item_id"] for i in read_jsonl(subset["items"]))
    review_ids = {r["review_id"] for r in read_jsonl(subset["reviews"])}
    for record in records:
        assert 1 <= len(record["personas"]) <= 7
        assert record["generator"]["name"] == "extractive"
        for persona in record["personas"]:
            assert set(persona["evidence_review_ids"]) <= review_ids


def test_rerun_of_generate_skips_everything(subset, subset_personas):
    result = run_cli("personas", "generate", "--items", subset["items"], "--reviews", subset["reviews"],
                     "-o", subset_personas, "--no-progress", "--json")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["generated"] == 0 and summary["skipped"] == summary["items"] > 0


def test_recommend_json_gives_explained_unseen_hits(subset, subset_index):
    user = "demo-petite-dresses"
    result = run_cli("recommend", "--index", subset_index, "--interactions", subset["interactions"], "--user", user,
                     "-k", "5", "--json")
    payload = json.loads(result.stdout)
    hits = payload["hits"]
    assert len(hits) == 5 and payload["history"] == demo_history(subset, user)
    assert not set(payload["history"]) & {h["item_id"] for h in hits}
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    for hit in hits:
        assert hit["persona"]["name"] and hit["evidence"] and hit["scores"]["cosine"] == hit["score"]


def test_recommend_human_output_shows_persona_and_evidence(subset, subset_index):
    result = run_cli("recommend", "--index", subset_index, "--interactions", subset["interactions"],
                     "--user", "demo-casual-denim", "-k", "3")
    assert result.output.startswith("3 recommendation(s) for demo-casual-denim")
    assert result.output.count("persona: ") == 3 and result.output.count("evidence r") == 3


def test_hybrid_text_and_filter(subset, subset_index):
    result = run_cli("recommend", "--index", subset_index, "--text", "a flattering dress for a petite woman",
                     "--query", "petite length", "--filter", "categories=Dresses", "-k", "3", "--json")
    hits = json.loads(result.stdout)["hits"]
    assert hits and all(set(h["scores"]) == {"cosine", "bm25", "fused"} for h in hits)
    assert all(h["title"].startswith("Dresses") for h in hits)


def test_candidates_rerank_only_those(subset, subset_index):
    ids = [i["item_id"] for i in read_jsonl(subset["items"])][:4]
    result = run_cli("recommend", "--index", subset_index, "--history", ids[0], "--candidates", ",".join(ids), "--json")
    assert {h["item_id"] for h in json.loads(result.stdout)["hits"]} == set(ids[1:])


def test_explain(subset, subset_index):
    user = "demo-petite-dresses"
    top = json.loads(run_cli("recommend", "--index", subset_index, "--interactions", subset["interactions"],
                             "--user", user, "-k", "1", "--json").stdout)["hits"][0]
    result = run_cli("explain", "--index", subset_index, "--interactions", subset["interactions"], "--user", user,
                     "--item", top["item_id"], "--json")
    explanation = json.loads(result.stdout)
    assert explanation["rank"] == 1 and explanation["hit"]["item_id"] == top["item_id"]
    assert explanation["persona_scores"][0]["persona"]["persona_id"] == top["persona"]["persona_id"]
    assert len(explanation["contributions"]) == len(demo_history(subset, user))
    human = run_cli("explain", "--index", subset_index, "--interactions", subset["interactions"], "--user", user,
                    "--item", top["item_id"]).output
    assert "Best persona:" in human and "History behind it" in human


def test_errors_have_messages_and_exit_codes(subset, subset_index, tmp_path):
    missing_user = run_cli("recommend", "--index", subset_index, "--interactions", subset["interactions"],
                           "--user", "nobody", expect=66)
    assert "error: user 'nobody' has no interactions" in missing_user.output
    bad_filter = run_cli("recommend", "--index", subset_index, "--text", "x", "--filter", "colour=red", expect=64)
    assert "invalid filter field 'colour'" in bad_filter.output
    no_index = run_cli("recommend", "--index", tmp_path / "none", "--text", "x", expect=66)
    assert "no such index directory; build one with: p4r index build" in no_index.output
    unknown = run_cli("recommend", "--index", subset_index, "--history", "no-such-item", expect=66)
    assert "none of the history's 1 item(s) is in the index (no-such-item)" in unknown.output
    bad = tmp_path / "interactions.jsonl"
    bad.write_text('{"user_id": "u", "item_id": "no-such-item", "timestamp": 1}\n')
    only_unknown = run_cli("recommend", "--index", subset_index, "--interactions", bad, "--user", "u", expect=66)
    assert "none of the history's 1 item(s) is in the index (no-such-item)" in only_unknown.output
    nothing = run_cli("recommend", "--index", subset_index, expect=64)
    assert "give a history" in nothing.output


def test_cli_py_runs_the_same_app():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "cli.py"), "--help"], capture_output=True, text=True, check=True)
    assert "personas" in out.stdout and "recommend" in out.stdout and "Exit codes" in out.stdout
