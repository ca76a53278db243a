"""First-hour problems of `recommend`, `explain` and `index build`, through the real CLI on the real example data.

Unknown ids are skipped for the asked user and reported; an empty result says why; explain on a seen item
says so; a dry run refuses a history up front; a JSON error names its column on its own line; a cluster
build creates its index with the p4r mapping or refuses one without it (the loopback stand-in cluster of
loopback_cluster.py: real HTTP and the official clients, not a real engine).
"""

from __future__ import annotations

import json

import pytest
from conftest import read_jsonl, run_cli, write_jsonl
from loopback_cluster import LoopbackCluster

from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.cli.engines import open_cluster
from p4r_search.diagnose import why_empty
from p4r_search.errors import NotFoundError
from p4r_search.recommend import Recommender, SearchOptions, UserInput

PETITE, DENIM = "demo-petite-dresses", "demo-casual-denim"
LATER = "2026-03-01T00:00:00Z"
DIM = 384
INDEX = "items"


def history_of(subset, user) -> list[str]:
    return [i["item_id"] for i in read_jsonl(subset["interactions"]) if i["user_id"] == user]


def recommend_json(*args, expect=0):
    result = run_cli("recommend", *args, "--json", expect=expect)
    return (json.loads(result.stdout) if expect == 0 else None), result


@pytest.fixture
def interactions_with_unknowns(subset, tmp_path):
    """The subset's interactions, plus another user's line and a PETITE line on items the index lacks."""
    rows = read_jsonl(subset["interactions"])
    rows.insert(0, {"user_id": "someone-else", "item_id": "gone-elsewhere", "timestamp": LATER})
    rows.append({"user_id": PETITE, "item_id": "gone-1", "timestamp": LATER})
    rows.append({"user_id": "only-gone", "item_id": "gone-2", "timestamp": LATER})
    return write_jsonl(tmp_path / "interactions.jsonl", rows)


# -- 1. ids the index lacks: skipped for the asked user, and said ------------------------------------------------
def test_another_users_unknown_item_is_not_an_error(subset, subset_index, interactions_with_unknowns):
    payload, result = recommend_json("--index", subset_index, "--interactions", interactions_with_unknowns,
                                     "--user", DENIM, "-k", "3")
    expected, _ = recommend_json("--index", subset_index, "--interactions", subset["interactions"], "--user", DENIM,
                                 "-k", "3")
    assert payload["hits"] == expected["hits"] and len(payload["hits"]) == 3
    assert payload["skipped"] == {"history": [], "candidates": []} and payload["why_empty"] == []
    assert "skipped" not in result.stderr


def test_the_asked_users_unknown_item_is_skipped_and_said(subset, subset_index, interactions_with_unknowns):
    payload, result = recommend_json("--index", subset_index, "--interactions", interactions_with_unknowns,
                                     "--user", PETITE, "-k", "3")
    expected, _ = recommend_json("--index", subset_index, "--interactions", subset["interactions"], "--user", PETITE,
                                 "-k", "3")
    assert payload["skipped"] == {"history": ["gone-1"], "candidates": []}
    assert payload["hits"] == expected["hits"]  # the profile is made of the rest of the history
    assert "note: skipped 1 history item(s) not in the index: gone-1" in result.stderr
    human = run_cli("recommend", "--index", subset_index, "--interactions", interactions_with_unknowns,
                    "--user", PETITE, "-k", "3")
    assert human.stdout.startswith("3 recommendation(s)") and "gone-1" in human.stderr


def test_explain_skips_the_same_way(subset, subset_index, interactions_with_unknowns):
    args = ("explain", "--index", subset_index, "--interactions", interactions_with_unknowns, "--user", PETITE,
            "--item", "1022")
    explanation = json.loads(run_cli(*args, "--json").stdout)
    assert explanation["skipped_history"] == ["gone-1"]
    assert {c["item_id"] for c in explanation["contributions"]} == set(history_of(subset, PETITE))
    assert "note: skipped 1 history item(s) not in the index: gone-1" in run_cli(*args).stderr


def test_nothing_left_of_the_history_is_an_error(subset_index, interactions_with_unknowns):
    _, result = recommend_json("--index", subset_index, "--interactions", interactions_with_unknowns,
                               "--user", "only-gone", expect=66)
    assert "none of the history's 1 item(s) is in the index (gone-2)" in result.output
    _, result = recommend_json("--index", subset_index, "--history", "nope-1,nope-2", expect=66)
    assert "none of the history's 2 item(s) is in the index (nope-1, nope-2)" in result.output
    # with a text, the text alone makes the profile
    payload, result = recommend_json("--index", subset_index, "--history", "nope-1", "--text", "a summer dress",
                                     "-k", "2")
    assert len(payload["hits"]) == 2 and payload["skipped"]["history"] == ["nope-1"]


def test_history_and_candidates_follow_one_rule(subset, subset_index):
    first, second, *rest = [i["item_id"] for i in read_jsonl(subset["items"])]
    payload, result = recommend_json("--index", subset_index, "--history", f"nope-h,{first}",
                                     "--candidates", ",".join([second, "nope-c", *rest[:2]]))
    assert payload["skipped"] == {"history": ["nope-h"], "candidates": ["nope-c"]}
    assert {h["item_id"] for h in payload["hits"]} == {second, *rest[:2]}
    assert "note: skipped 1 history item(s) not in the index: nope-h" in result.stderr
    assert "note: skipped 1 candidate(s) not in the index: nope-c" in result.stderr


def test_the_library_reports_what_it_skipped(subset, subset_index):
    recommender = Recommender(EmbeddedBackend(subset_index))
    history = tuple(history_of(subset, PETITE))
    report = recommender.recommend_with_report(UserInput(history=("gone", *history)),
                                               SearchOptions(k=3, candidate_ids=("gone-c", "1022", "1025", "815")))
    assert report.skipped.history == ("gone",) and report.skipped.candidates == ("gone-c",)
    assert [h.item_id for h in report.hits] == [h.item_id for h in recommender.recommend(
        UserInput(history=history), SearchOptions(k=3, candidate_ids=("1022", "1025", "815")))]
    with pytest.raises(NotFoundError, match="none of the history's 1 item"):
        recommender.recommend(UserInput(history=("gone",)))


class CountedLookups:
    """The real embedded backend, with every lookup of ids recorded (what a cluster answers with `_mget` or a
    search): to count how often a recommendation asks for its history."""

    def __init__(self, backend):
        self.backend, self.lookups = backend, []

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def persona_vectors(self, ids):
        self.lookups.append(tuple(ids))
        return self.backend.persona_vectors(ids)

    def existing_ids(self, ids):
        self.lookups.append(tuple(ids))
        return self.backend.existing_ids(ids)


def test_a_recommendation_looks_its_history_up_once(subset, subset_index):
    backend = CountedLookups(EmbeddedBackend(subset_index))
    history = ("gone", *history_of(subset, PETITE))
    for options in (SearchOptions(k=3), SearchOptions(k=3, candidate_ids=("1022", "1025"), candidate_weight=0.5)):
        backend.lookups.clear()
        report = Recommender(backend).recommend_with_report(UserInput(history=history), options)
        assert report.skipped.history == ("gone",) and report.hits
        asked = [ids for ids in backend.lookups if set(ids) & set(history)]
        assert len(asked) == 1 and sorted(asked[0]) == sorted(set(history)), backend.lookups  # newest first


def test_a_malformed_line_of_another_user_is_still_an_error(subset, subset_index, tmp_path):
    lines = subset["interactions"].read_text().splitlines()
    lines.insert(1, '{"user_id": "x", "item_id": "1022", "timestamp": 1')
    bad = tmp_path / "interactions.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    _, result = recommend_json("--index", subset_index, "--interactions", bad, "--user", PETITE, expect=65)
    assert f"{bad}:2: malformed JSON" in result.output


# -- 2. an empty result says why -------------------------------------------------------------------------------
def test_a_filter_value_in_the_wrong_case_suggests_the_right_one(subset, subset_index):
    payload, result = recommend_json("--index", subset_index, "--interactions", subset["interactions"],
                                     "--user", DENIM, "--filter", "categories=dresses")
    assert payload["hits"] == []
    reason = "no item has categories=dresses; did you mean Dresses?"
    assert payload["why_empty"][0].startswith(reason)
    assert f"note: no results: {reason}" in result.stderr
    human = run_cli("recommend", "--index", subset_index, "--history", "1022", "--filter", "categories=dresses")
    assert human.stdout.startswith("0 recommendation(s)") and reason in human.stderr


def test_a_filter_on_an_attribute_no_item_has(subset_index):
    payload, _ = recommend_json("--index", subset_index, "--text", "jeans", "--filter", "attributes.colour=red")
    assert payload["why_empty"] == ["no item has attributes.colour=red: no item in the index has any attributes.colour"]
    payload, _ = recommend_json("--index", subset_index, "--text", "jeans", "--filter", "attributes.class=Jean")
    assert payload["why_empty"][0].startswith("no item has attributes.class=Jean; its values include ")
    assert "Jeans" in payload["why_empty"][0]


def test_a_filter_whose_matches_are_all_seen_suggests_include_seen(subset, subset_index):
    dresses = [i["item_id"] for i in read_jsonl(subset["items"]) if "Dresses" in i["categories"]]
    assert set(dresses) == set(history_of(subset, PETITE))  # the subset's only dresses are PETITE's
    args = ("--index", subset_index, "--interactions", subset["interactions"], "--user", PETITE,
            "--filter", "categories=Dresses")
    payload, result = recommend_json(*args)
    assert payload["hits"] == []
    assert payload["why_empty"] == [(f"all {len(dresses)} items that pass the filters are in the user's history, "
                                     "and seen items are not recommended (--include-seen allows them)")]
    assert "--include-seen" in result.stderr
    payload, _ = recommend_json(*args, "--include-seen")
    assert {h["item_id"] for h in payload["hits"]} == set(dresses) and payload["why_empty"] == []


def test_build_without_items_warns_and_the_empty_result_says_why(subset, subset_personas, tmp_path):
    index = tmp_path / "no-items"
    build = run_cli("index", "build", "--personas", subset_personas, "--index", index, "--no-progress")
    assert "warning: no --items: titles will be the item ids" in build.stderr
    payload, _ = recommend_json("--index", index, "--text", "a dress", "--filter", "categories=Dresses")
    assert payload["hits"] == []
    assert payload["why_empty"] == [("no item has categories=Dresses: no item in the index has any categories (an "
                                     "index built without --items has no categories or attributes: rebuild it with "
                                     "--items)")]
    with_items = run_cli("index", "build", "--personas", subset_personas, "--items", subset["items"],
                         "--index", tmp_path / "with-items", "--no-progress")
    assert "--items" not in with_items.stderr


# -- 10a. explain on a seen item, and "of N" among unseen items -----------------------------------------------
def test_explain_a_seen_item_says_it_was_excluded_as_seen(subset, subset_index):
    history = history_of(subset, PETITE)
    args = ("explain", "--index", subset_index, "--interactions", subset["interactions"], "--user", PETITE)
    seen = json.loads(run_cli(*args, "--item", history[0], "--json").stdout)
    assert seen["in_history"] is True and seen["rank"] is None and seen["seen"] == len(set(history))
    human = run_cli(*args, "--item", history[0]).stdout
    assert f"not ranked: excluded as seen (it is in the user's history; 12 items, {len(set(history))} seen)" in human
    assert "top 1000" not in human
    unseen = json.loads(run_cli(*args, "--item", "815", "--json").stdout)
    assert unseen["in_history"] is False and 1 <= unseen["rank"] <= 12 - len(set(history))
    assert f"of {12 - len(set(history))} unseen items (12 items, {len(set(history))} seen)" in \
        run_cli(*args, "--item", "815").stdout


# -- 10b. a dry run cannot read a history ----------------------------------------------------------------------
@pytest.mark.parametrize("who", [("--history", "1078"), ("--user", PETITE)])
def test_a_dry_run_with_a_history_asks_for_text(subset, who):
    result = run_cli("recommend", "--engine", "es", "--index", INDEX, "--dry-run", *who,
                     "--interactions", subset["interactions"], expect=64)
    assert "error: a dry run needs --text instead of --user/--history" in result.output
    assert "not in the index" not in result.output and '"method"' not in result.output


# -- 10c. a JSON error's column is on its own line -------------------------------------------------------------
def test_a_missing_closing_brace_is_reported_on_its_line(subset_index, tmp_path):
    good = '{"user_id": "u", "item_id": "1022", "timestamp": 1}'
    broken = '{"user_id": "u", "item_id": "1025", "timestamp": 2'
    path = tmp_path / "interactions.jsonl"
    path.write_text(f"{good}\n{good}\n{broken}\n{good}\n")
    result = run_cli("recommend", "--index", subset_index, "--interactions", path, "--user", "u", expect=65)
    assert f"{path}:3: malformed JSON: Expecting ',' delimiter (column {len(broken) + 1})" in result.output


# -- 10d. a cluster build creates its index with the p4r mapping, or refuses one without it -------------------
@pytest.fixture
def start_cluster(monkeypatch):
    for name in ("P4R_API_KEY", "P4R_USERNAME", "P4R_PASSWORD", "P4R_URL"):
        monkeypatch.delenv(name, raising=False)
    started: list[LoopbackCluster] = []

    def start(flavour: str, **script) -> LoopbackCluster:
        started.append(LoopbackCluster(flavour, **script).start())
        return started[-1]

    yield start
    for cluster in started:
        cluster.stop()


def cluster_build(cluster, subset, personas, tmp_path, expect=0):
    return run_cli("index", "build", "--engine", cluster.flavour, "--url", cluster.url, "--index", INDEX,
                   "--personas", personas, "--items", subset["items"], "--no-progress",
                   "--failed-docs", tmp_path / "failed.jsonl", expect=expect)


def writes(cluster) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in cluster.requests if r.method in ("PUT", "POST") and "_refresh" not in r.path]


@pytest.mark.parametrize("engine", ["es", "opensearch"])
def test_build_creates_a_missing_index_with_the_p4r_mapping(engine, start_cluster, subset, subset_personas, tmp_path):
    cluster = start_cluster(engine)
    result = cluster_build(cluster, subset, subset_personas, tmp_path)
    assert f"note: index {INDEX} did not exist; created it with the p4r mapping ({DIM}-d persona vectors)" in result.stderr
    put, *bulks = writes(cluster)
    assert put == ("PUT", f"/{INDEX}") and bulks and all(path.endswith("/_bulk") for _, path in bulks)
    personas = cluster.mappings[INDEX]["properties"]["personas"]
    vector = personas["properties"]["vector"]
    assert personas["type"] == "nested" and (vector.get("dims") or vector.get("dimension")) == DIM
    assert len(cluster.docs[INDEX]) == 12
    # the second build finds a compatible index: no new PUT, no note
    again = cluster_build(cluster, subset, subset_personas, tmp_path)
    assert "did not exist" not in again.stderr and [w for w in writes(cluster) if not w[1].endswith("/_bulk")] == [put]


def es_or_os_vector(engine: str, dim: int) -> dict:
    if engine == "es":
        return {"type": "dense_vector", "dims": dim, "index": True, "similarity": "cosine"}
    return {"type": "knn_vector", "dimension": dim}


REFUSED = {  # case: (the index's properties, given the engine; what the refusal says)
    "no personas field": (lambda engine: {"title": {"type": "text"}}, "run `p4r index attach`"),
    "personas of other dims": (
        lambda engine: {"personas": {"type": "nested", "properties": {"vector": es_or_os_vector(engine, 128)}}},
        f"personas.vector has 128 dimensions; the encoder gives {DIM}"),
    "a dynamic personas object": (  # what a bulk write into a missing index used to make
        lambda engine: {"personas": {"properties": {"vector": {"type": "float"}}}},
        "a 'personas' field of type 'object', not nested"),
}


@pytest.mark.parametrize("case", list(REFUSED))
@pytest.mark.parametrize("engine", ["es", "opensearch"])
def test_build_refuses_an_index_without_the_personas_mapping(engine, case, start_cluster, subset, subset_personas,
                                                             tmp_path):
    properties, message = REFUSED[case]
    mapping = {"properties": properties(engine)}
    cluster = start_cluster(engine, mappings={INDEX: mapping}, docs={INDEX: {"a": {"title": "user doc"}}})
    result = cluster_build(cluster, subset, subset_personas, tmp_path, expect=64)
    assert message in result.output and "--index" in result.output
    assert ("GET", f"/{INDEX}/_mapping") in cluster.paths()
    assert writes(cluster) == [] and cluster.docs[INDEX] == {"a": {"title": "user doc"}}


# -- 2 on a cluster: the same diagnosis through count and terms requests ---------------------------------------
@pytest.mark.parametrize("engine", ["es", "opensearch"])
def test_cluster_diagnosis_uses_counts_and_filter_values(engine, start_cluster, subset, subset_personas, tmp_path):
    cluster = start_cluster(engine)
    cluster_build(cluster, subset, subset_personas, tmp_path)
    backend = open_cluster(engine, INDEX, cluster.url, None, False, "lucene", False, None, None)
    assert backend.existing_ids(["1022", "nope"]) == {"1022"}
    assert backend.count_items({}) == 12 and backend.count_items({"categories": ("Jeans",)}) == 6
    assert why_empty(backend, filters={"categories": ("dresses",)})[0].startswith(
        "no item has categories=dresses; did you mean Dresses?")
    dresses = ("1072", "1080")
    assert why_empty(backend, filters={"categories": ("Dresses",)}, exclude_ids=dresses) == [
        ("all 2 items that pass the filters are in the user's history, and seen items are not recommended "
         "(--include-seen allows them)")]
    assert why_empty(backend, filters={"attributes.colour": ("red",)}) == [
        "no item has attributes.colour=red: no item in the index has any attributes.colour"]
    searches = [r for r in cluster.requests if r.path.endswith(("/_count", "/_search"))]
    assert searches and all(r.status == 200 for r in searches)
