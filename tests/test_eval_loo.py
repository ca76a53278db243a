"""`p4r eval loo` end to end on a slice of real data (Amazon All_Beauty, a third of its users), through the CLI."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from eval_data import amazon_slice, needs_amazon, read_jsonl

from p4r_search.evaluation.data import load_eval_data
from p4r_search.evaluation.split import leave_one_out
from p4r_search.io import LineReader

GENERATORS = ("popularity", "bpr", "als", "ease", "rp3beta", "itemknn", "sasrec")
FUSIONS = ("fusion", "fusion-score", "fusion-evidence")
RERANKERS = ("none", "cf", "bm25", "persona", "single", *FUSIONS)
LEARNED = ("ltr", "ltr-no-persona", "ltr-cf")
METRICS = [f"{m}@{k}" for m in ("HR", "MRR", "NDCG") for k in (5, 10, 20)]


@pytest.fixture(scope="module")
def loo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loo")
    data = amazon_slice(folder, every_nth_user=3)
    out = folder / "out"
    result = run_cli("eval", "loo", "--data", data, "--out", out, "--no-progress")
    return data, out, result.output



def row(results, split, candidates, reranker):
    (found,) = [r for r in results if (r["split"], r["candidates"], r["reranker"]) == (split, candidates, reranker)]
    return found


@needs_amazon
def test_report_shape(loo_run):
    _, out, printed = loo_run
    report = json.loads((out / "results.json").read_text())
    assert {"config", "results"} <= report.keys()
    keys = [(r["task"], r["split"], r["candidates"], r["reranker"]) for r in report["results"]]
    assert len(keys) == len(set(keys)), "one row per (task, split, candidates, reranker)"
    expected = {("loo", s, c, r) for s in ("validation", "test") for c in GENERATORS for r in RERANKERS}
    expected |= {("loo", s, "none", r) for s in ("validation", "test") for r in ("persona", "single", "bm25")}
    expected |= {("loo", s, "pool", r) for s in ("validation", "test") for r in LEARNED}
    assert set(keys) == expected
    for r in report["results"]:
        assert all(0 <= r[m] <= 1 for m in METRICS), r
    config = report["config"]
    assert config["persona_generator"]["name"] == "extractive"
    assert config["seeds"] == {"generator": 0, "cf": 0, "training": 0}
    assert set(config["generator_params"]) == set(GENERATORS)
    assert config["learned_reranker"]["pool"]["mean_size"] >= 20
    assert config["counts"]["users_evaluated"] > 100
    summary = report["summary"]
    assert summary["strongest_generator"] in GENERATORS
    assert summary["best_persona_reranker"] in ("persona", *FUSIONS, "ltr")
    assert "## Headline (test)" in printed and "| als | persona |" in printed and "| pool | ltr |" in printed
    assert "## Each lever over the strongest generator" in printed and "Segments of the chosen reranker" in printed
    assert (out / "results.md").read_text().startswith("# Leave-one-out evaluation")


@needs_amazon
def test_every_variant_is_tuned_and_reported_with_the_headline_interval(loo_run):
    _, out, printed = loo_run
    report = json.loads((out / "results.json").read_text())
    summary, strongest = report["summary"], report["summary"]["strongest_generator"]
    variants = {(p, e, k) for p in ("items", "reviews", "both") for e in ("untrained", "trained")
                for k in ("text", "evidence", "blend")}
    found = {}
    for r in report["ablation"]:
        found.setdefault((r["candidates"], r["reranker"]), set()).add((r["profile"], r["encoder"], r["persona_vector"]))
    assert found == {(strongest, "persona"): variants, (strongest, "single"): variants,
                     **{(strongest, f): variants for f in FUSIONS},
                     ("none", "persona"): variants, ("none", "single"): variants}
    for r in report["results"]:
        if r["reranker"] in ("persona", "single", *FUSIONS):
            assert {"profile", "encoder", "persona_vector", "N", "gamma"} <= r["params"].keys()
    persona = row(report["results"], "test", strongest, "persona")["params"]
    single = row(report["results"], "test", strongest, "single")["params"]
    assert [persona[k] for k in ("profile", "encoder", "persona_vector")] == \
        [single[k] for k in ("profile", "encoder", "persona_vector")]  # the same encoder and profile
    interval = summary["persona_lift_ci95"]["NDCG@10"]
    assert interval["ci95"][0] <= interval["difference"] <= interval["ci95"][1]
    assert interval["cases"] == report["config"]["counts"]["users_evaluated"]
    start = summary["start_with"]
    assert start["profile_source"] in ("items", "reviews", "both") and start["encoder"] in ("untrained", "trained")
    if summary["best_persona_reranker"] in FUSIONS:
        assert 0 <= start["candidate_weight"] <= 1
    levers = summary["levers"]
    assert {f"{strongest}/{r}" for r in ("persona", *FUSIONS)} | {f"pool/{r}" for r in LEARNED} == set(levers)
    for lever in levers.values():
        low, high = lever["lift_ci95"]["ci95"]
        assert low <= lever["lift_ci95"]["difference"] <= high
    for lever, segments in summary["segments"].items():
        assert sum(s["cases"] for s in segments if s["segment"].startswith(("target", ))) == interval["cases"]
        assert sum(s["cases"] for s in segments if s["segment"].startswith("history")) == interval["cases"]
    heads = report["config"]["training"]["heads"]
    assert len(heads) == 9 and all(h["losses"][-1] < h["losses"][0] for h in heads.values())
    assert (out / "encoder" / "modules.json").is_file() == (start["encoder"] == "trained")
    assert "## Ablation" in printed and "bootstrap 95 % interval" in printed


@needs_amazon
def test_rerankers_reorder_the_same_top_20(loo_run):
    _, out, _ = loo_run
    results = json.loads((out / "results.json").read_text())["results"]
    for split in ("validation", "test"):
        for candidates in GENERATORS:
            hr20 = {row(results, split, candidates, r)["HR@20"] for r in RERANKERS}
            assert len(hr20) == 1, (split, candidates, hr20)


@needs_amazon
def test_the_strongest_generator_is_chosen_on_validation_and_beats_popularity(loo_run):
    _, out, _ = loo_run
    report = json.loads((out / "results.json").read_text())
    results = report["results"]
    popularity = row(results, "test", "popularity", "none")
    best_cf = max(GENERATORS, key=lambda g: row(results, "validation", g, "none")["NDCG@10"])
    assert row(results, "test", best_cf, "none")["NDCG@10"] > popularity["NDCG@10"]
    assert report["summary"]["strongest_generator"] == best_cf
    assert report["config"]["training"]["hard_negatives"] == best_cf  # the encoder trained against its top 20


@needs_amazon
def test_the_personas_it_built_saw_no_held_out_review(loo_run):
    data_dir, out, _ = loo_run
    split = leave_one_out(load_eval_data(data_dir, LineReader()).interactions)
    held = {r["review_id"] for r in read_jsonl(data_dir / "reviews.jsonl")
            if (r["user_id"], r["item_id"]) in split.held_out}
    records = read_jsonl(out / "work" / "personas-extractive.jsonl")
    used = {rid for record in records for rid in record["used_review_ids"]}
    assert held and used and not held & used


def test_bad_input_names_the_missing_file(tmp_path):
    (tmp_path / "items.jsonl").write_text("")
    result = run_cli("eval", "loo", "--data", tmp_path, "--out", tmp_path / "out", expect=65)
    assert "missing reviews.jsonl, interactions.jsonl" in result.output


@needs_amazon
def test_hard_negatives_from_a_generator_not_run_is_refused_before_any_work(tmp_path):
    data = amazon_slice(tmp_path, every_nth_user=3)
    result = run_cli("eval", "loo", "--data", data, "--out", tmp_path / "out", "--generators", "popularity,ease",
                     "--hard-negatives", "als", expect=64)
    assert "hard negatives from 'als'" in result.output and "popularity, ease" in result.output
    assert not (tmp_path / "out" / "work").exists()
