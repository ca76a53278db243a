"""`p4r index build/attach --engine es|opensearch` over real HTTP, through the official clients.

The cluster is `loopback_cluster.LoopbackCluster`, a STAND-IN on 127.0.0.1: no Elasticsearch or
OpenSearch server can run here. It answers like one, scripts bulk failures (whole-request 429/503,
item 429/503, permanent item 400) and records every request, so these tests check what p4r and the
clients put on the wire and how they react; not how a real cluster indexes. Everything else is real:
the example personas, the packaged encoder, the `p4r` CLI, the elasticsearch-py / opensearch-py clients.

Backoff sleeps (p4r's own and the clients' bulk helpers') are recorded instead of slept.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections import Counter

import elasticsearch.helpers.actions as es_helper_actions
import opensearchpy.helpers.actions as os_helper_actions
import pytest

import p4r_search.backends.cluster as cluster_module
from conftest import read_jsonl, run_cli
from loopback_cluster import LoopbackCluster

ENGINES = ["es", "opensearch"]
DIM = 384  # all-MiniLM-L6-v2
INDEX = "items"


class RecordingTime:
    """Stands for the `time` module of one library module: `sleep` records its delay and returns at once."""

    def __init__(self, delays: list[float]):
        self.delays = delays

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)

    def __getattr__(self, name):
        return getattr(time, name)


@pytest.fixture
def sleeps(monkeypatch) -> dict[str, list[float]]:
    delays: dict[str, list[float]] = {"p4r": [], "helpers": []}
    monkeypatch.setattr(cluster_module, "time", RecordingTime(delays["p4r"]))
    monkeypatch.setattr(es_helper_actions, "time", RecordingTime(delays["helpers"]))
    monkeypatch.setattr(os_helper_actions, "time", RecordingTime(delays["helpers"]))
    return delays


@pytest.fixture
def start_cluster():
    """Starts stand-ins (random free port, daemon thread) and stops them all after the test."""
    started: list[LoopbackCluster] = []

    def start(flavour: str, **script) -> LoopbackCluster:
        cluster = LoopbackCluster(flavour, **script).start()
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture(autouse=True)
def no_cluster_env(monkeypatch):
    for name in ("P4R_API_KEY", "P4R_USERNAME", "P4R_PASSWORD", "P4R_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def item_ids(subset_personas) -> list[str]:
    """The item ids of the personas file, in file order (the order p4r writes them in)."""
    ids = [r["item_id"] for r in read_jsonl(subset_personas)]
    assert len(ids) == len(set(ids)) == 12
    return ids


def build(cluster: LoopbackCluster, personas, failed, *extra, expect: int = 0):
    return run_cli("index", "build", "--engine", cluster.flavour, "--url", cluster.url, "--index", INDEX,
                   "--personas", personas, "--chunk-size", "5", "--no-progress", "--failed-docs", failed,
                   *extra, expect=expect)


def attach(cluster: LoopbackCluster, personas, failed, *extra, expect: int = 0):
    return run_cli("index", "attach", "--engine", cluster.flavour, "--url", cluster.url, "--index", INDEX,
                   "--personas", personas, "--chunk-size", "5", "--no-progress", "--failed-docs", failed,
                   *extra, expect=expect)


def pairs(lines: list) -> list[tuple[str, dict, dict]]:
    """(op, action metadata, body) per bulk item."""
    assert len(lines) % 2 == 0, "every bulk action here has a body line"
    return [(*next(iter(action.items())), body) for action, body in zip(lines[::2], lines[1::2])]


def assert_personas(personas: list[dict]) -> None:
    assert personas, "an item document holds its personas"
    for persona in personas:
        vector = persona["vector"]
        assert len(vector) == DIM and all(isinstance(x, float) for x in vector)
        assert persona["persona_id"] and persona["text"]


def assert_index_actions(lines: list, ids: set[str]) -> list[str]:
    """Every pair is an `index` action on INDEX with `_id` == item id and a whole item document."""
    sent = []
    for op, meta, source in pairs(lines):
        assert op == "index"
        assert meta == {"_index": INDEX, "_id": source["item_id"]}
        assert meta["_id"] in ids
        assert set(source) >= {"item_id", "title", "categories", "attributes", "personas", "p4r"}
        assert_personas(source["personas"])
        sent.append(meta["_id"])
    return sent


def vector_field(flavour: str, dim: int) -> dict:
    if flavour == "es":
        return {"type": "dense_vector", "dims": dim, "index": True, "similarity": "cosine"}
    return {"type": "knn_vector", "dimension": dim, "method": {"name": "hnsw", "engine": "lucene"}}


def dims_of(flavour: str, vector: dict) -> int:
    return vector["dims"] if flavour == "es" else vector["dimension"]


# -- 1. bulk failures: client retries, p4r retries with backoff, permanent failures to a file ----------------
@pytest.mark.parametrize("engine", ENGINES)
def test_build_retries_transient_failures_and_reports_permanent_ones(engine, start_cluster, sleeps, subset_personas,
                                                                     item_ids, tmp_path):
    ids = item_ids
    rejected = {ids[1], ids[6]}  # 400 mapper_parsing_exception, every time
    cluster = start_cluster(
        engine,
        whole_request_failures=[429, 503],  # the first bulk request, as a whole: retried by the client
        rejected=set(rejected),
        # 429 nine times: more than the client helper's 4 tries, so p4r's own loop retries it twice
        # 503 twice: the Elasticsearch helper retries it itself; the OpenSearch helper leaves it to p4r
        throttled={ids[3]: (429, 9), ids[11]: (503, 2)},
    )
    failed = tmp_path / "failed.jsonl"
    result = build(cluster, subset_personas, failed, "--json", expect=75)

    # the failed-docs file: exactly the permanent failures, with their status and error
    records = read_jsonl(failed)
    assert sorted(r["item_id"] for r in records) == sorted(rejected)
    for record in records:
        assert record["status"] == 400 and record["action"] == "index"
        assert record["error"]["type"] == "mapper_parsing_exception"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["written"] == len(ids) - len(rejected) and summary["failed"] == len(rejected)
    assert summary["retried"] >= 2 and summary["failed_docs"] == str(failed)
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]  # with --json, the error is JSON too
    assert error["exit_code"] == 75 and error["message"].startswith(f"{len(rejected)} document(s) were not written")

    # what the stand-in accepted: everything but the permanent failures
    assert set(cluster.docs[INDEX]) == set(ids) - rejected
    for item_id, source in cluster.docs[INDEX].items():
        assert source["item_id"] == item_id
        assert_personas(source["personas"])

    # the first chunk went three times as a whole (429, 503, then answered), the same body each time
    bulks = cluster.bulk_requests()
    assert [b.status for b in bulks[:3]] == [429, 503, 200]
    assert bulks[0].body == bulks[1].body == bulks[2].body
    assert {b.status for b in bulks[3:]} == {200}
    assert [m["_id"] for _, m, _ in pairs(bulks[0].lines)] == ids[:5]  # --chunk-size 5
    # every body: index actions with _id == item id and a 384-float vector per persona
    for bulk in bulks:
        assert_index_actions(bulk.lines, set(ids))

    # retried items were sent again, and only they
    sent = Counter(cluster.sent_ids)
    assert sent[ids[3]] == 10  # 9 refusals, then accepted
    assert sent[ids[11]] == 3  # 2 refusals, then accepted
    assert all(sent[i] == 1 for i in ids if i not in (ids[3], ids[11]))

    # p4r's backoff grows within a chunk (0.5, 1, 2 …; it starts again at each chunk), the helpers' too
    p4r = sleeps["p4r"]
    assert p4r[:2] == [0.5, 1.0]
    assert all(d == 0.5 or d == 2 * prev for prev, d in zip([None, *p4r], p4r))
    assert sleeps["helpers"][:3] == [1, 2, 4]


# -- 2. a clean run, and a rerun that converges --------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_clean_build_exits_0_and_a_rerun_converges(engine, start_cluster, sleeps, subset_personas, item_ids, tmp_path):
    cluster = start_cluster(engine)
    failed = tmp_path / "failed.jsonl"
    first = build(cluster, subset_personas, failed, "--json")
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary == {"written": 12, "failed": 0, "retried": 0, "index": INDEX}
    first_bulks = cluster.bulk_requests()
    first_docs = copy.deepcopy(cluster.docs[INDEX])
    assert set(first_docs) == set(item_ids)

    build(cluster, subset_personas, failed)
    second_bulks = cluster.bulk_requests()[len(first_bulks):]
    first_sent = [i for b in first_bulks for i in assert_index_actions(b.lines, set(item_ids))]
    second_sent = [i for b in second_bulks for i in assert_index_actions(b.lines, set(item_ids))]
    assert first_sent == second_sent == item_ids  # stable ids, same order, each once
    assert cluster.docs[INDEX] == first_docs  # same ids, same documents: the rerun converged
    assert not failed.exists() and sleeps["p4r"] == []
    assert [b.status for b in cluster.bulk_requests()] == [200] * 6


# -- 3. attach ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_attach_refuses_a_personas_field_of_other_dims_before_writing(engine, start_cluster, subset_personas,
                                                                      item_ids, tmp_path):
    mapping = {"properties": {"title": {"type": "text"},
                              "personas": {"type": "nested", "properties": {"vector": vector_field(engine, 128)}}}}
    cluster = start_cluster(engine, mappings={INDEX: mapping},
                            docs={INDEX: {i: {"title": f"user title {i}"} for i in item_ids}})
    before = copy.deepcopy(cluster.docs)
    result = attach(cluster, subset_personas, tmp_path / "failed.jsonl", expect=64)
    assert f"index '{INDEX}': personas.vector has 128 dimensions; the encoder gives {DIM}" in result.output
    assert ("GET", f"/{INDEX}/_mapping") in cluster.paths()
    assert not [r for r in cluster.requests if r.method == "PUT" or r.path.endswith("/_bulk")]
    assert cluster.docs == before and cluster.mappings[INDEX] == mapping
    assert not (tmp_path / "failed.jsonl").exists()


def test_attach_refuses_an_opensearch_index_made_without_knn(start_cluster, subset_personas, item_ids, tmp_path):
    """index.knn is final on OpenSearch (run on 3.5.0): attach says how out, before writing anything."""
    cluster = start_cluster("opensearch", mappings={INDEX: {"properties": {"title": {"type": "text"}}}},
                            knn_settings={INDEX: False}, docs={INDEX: {i: {"title": i} for i in item_ids}})
    out = run_cli("index", "attach", "--personas", subset_personas, "--engine", "opensearch", "--url", cluster.url,
                  "--index", INDEX, "--failed-docs", tmp_path / "failed.jsonl", "--no-progress", expect=69)
    assert "index.knn: true" in out.output and "_reindex" in out.output
    assert not [r for r in cluster.requests if r.method == "PUT" or r.path.endswith("/_bulk")]


@pytest.mark.parametrize("existing", ["absent", "compatible"])
@pytest.mark.parametrize("engine", ENGINES)
def test_attach_puts_the_mapping_then_updates_only_personas(engine, existing, start_cluster, subset_personas,
                                                            item_ids, tmp_path):
    properties = {"title": {"type": "text"}, "price": {"type": "float"}}
    if existing == "compatible":
        properties["personas"] = {"type": "nested", "properties": {"vector": vector_field(engine, DIM)}}
    user_docs = {i: {"title": f"user title {i}", "price": 10.5} for i in item_ids}
    cluster = start_cluster(engine, mappings={INDEX: {"properties": properties}},
                            docs={INDEX: copy.deepcopy(user_docs)})
    attach(cluster, subset_personas, tmp_path / "failed.jsonl")

    writes = [r for r in cluster.requests if r.method == "PUT" or r.path.endswith("/_bulk")]
    put, bulks = writes[0], writes[1:]
    assert (put.method, put.path) == ("PUT", f"/{INDEX}/_mapping")  # the mapping first, once
    assert bulks and all(b.path.endswith("/_bulk") for b in bulks)
    personas_field = put.json["properties"]["personas"]
    assert personas_field["type"] == "nested"
    assert dims_of(engine, personas_field["properties"]["vector"]) == DIM

    updated = []
    for bulk in bulks:
        for op, meta, body in pairs(bulk.lines):
            assert op == "update" and meta == {"_index": INDEX, "_id": meta["_id"]}
            assert set(body) == {"doc"} and set(body["doc"]) == {"personas", "p4r"}
            assert_personas(body["doc"]["personas"])
            updated.append(meta["_id"])
    assert updated == item_ids
    for item_id, doc in cluster.docs[INDEX].items():  # the user's fields are untouched
        assert {k: doc[k] for k in ("title", "price")} == user_docs[item_id]
        assert doc["p4r"]["encoder_model"]
    assert not (tmp_path / "failed.jsonl").exists()


# -- 4. auth from the environment, and secrets never printed ------------------------------------------------
AUTH_CASES = {
    "es-basic": ("es", {"P4R_USERNAME": "elastic", "P4R_PASSWORD": "s3cret-pw"},
                 "Basic " + base64.b64encode(b"elastic:s3cret-pw").decode()),
    "opensearch-basic": ("opensearch", {"P4R_USERNAME": "elastic", "P4R_PASSWORD": "s3cret-pw"},
                         "Basic " + base64.b64encode(b"elastic:s3cret-pw").decode()),
    "es-api-key": ("es", {"P4R_API_KEY": "key-123"}, "ApiKey key-123"),
}


@pytest.mark.parametrize("case", list(AUTH_CASES))
def test_auth_comes_from_the_environment_and_is_never_printed(case, monkeypatch, start_cluster, sleeps,
                                                              subset_personas, item_ids, tmp_path):
    engine, env, header = AUTH_CASES[case]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    secrets = [v for k, v in env.items() if k != "P4R_USERNAME"] + [header.split(" ", 1)[1]]
    cluster = start_cluster(engine, rejected={item_ids[0]}, throttled={item_ids[5]: (429, 5)})
    failed = tmp_path / "failed.jsonl"
    result = build(cluster, subset_personas, failed, expect=75)

    assert cluster.requests and cluster.bulk_requests()
    for request in cluster.requests:
        assert request.headers.get("authorization") == header, (request.method, request.path)
    if header.startswith("Basic "):
        assert base64.b64decode(header.split(" ", 1)[1]).decode() == "elastic:s3cret-pw"
    assert read_jsonl(failed)[0]["item_id"] == item_ids[0]

    dry = run_cli("index", "build", "--engine", engine, "--url", cluster.url, "--index", INDEX, "--personas",
                  subset_personas, "--dry-run", "--no-progress")
    for secret in secrets:
        assert secret not in result.output
        assert secret not in failed.read_text(encoding="utf-8")
        assert secret not in dry.output


def test_opensearch_refuses_an_api_key_before_connecting(monkeypatch, start_cluster, subset_personas, tmp_path):
    monkeypatch.setenv("P4R_API_KEY", "key-123")
    cluster = start_cluster("opensearch")
    result = build(cluster, subset_personas, tmp_path / "failed.jsonl", expect=64)
    assert "P4R_API_KEY is for Elasticsearch" in result.output and "key-123" not in result.output
    assert cluster.requests == []


# -- 5. --dry-run contacts nothing ---------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_dry_run_contacts_nothing_and_prints_the_bulk_requests(engine, start_cluster, subset_personas, item_ids,
                                                               tmp_path):
    cluster = start_cluster(engine)  # listening, with its URL given: still nothing may reach it
    result = run_cli("index", "build", "--engine", engine, "--url", cluster.url, "--index", INDEX, "--personas",
                     subset_personas, "--chunk-size", "5", "--no-progress", "--dry-run",
                     "--failed-docs", tmp_path / "failed.jsonl")
    assert cluster.requests == []
    lines = result.stdout.splitlines()
    requests = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(requests) == 4  # 12 items in chunks of 5, then the refresh
    assert requests[-1] == {"method": "POST", "path": f"/{INDEX}/_refresh"}
    sent = []
    for request in requests[:-1]:
        assert set(request) == {"method", "path", "body"}
        assert (request["method"], request["path"]) == ("POST", "/_bulk")
        sent += assert_index_actions(request["body"], set(item_ids))
    assert sent == item_ids
    assert not (tmp_path / "failed.jsonl").exists()


def test_dry_run_output_is_only_requests(subset_personas):
    result = run_cli("index", "build", "--engine", "es", "--index", INDEX, "--personas", subset_personas,
                     "--dry-run", "--no-progress")
    for line in result.stdout.splitlines():
        assert {"method", "path"} <= set(json.loads(line)), line


# -- the Elasticsearch client's API-version headers against the server's major version -------------------------
def test_a_9x_server_accepts_what_the_client_sends(start_cluster, sleeps, subset_personas, item_ids, tmp_path):
    cluster = start_cluster("es", es_version="9.1.0", strict_media_types=True)
    build(cluster, subset_personas, tmp_path / "failed.jsonl")
    assert set(cluster.docs[INDEX]) == set(item_ids)
    # every request accepted; the build's first look at the mapping finds no index (404), so it creates it
    assert [(r.method, r.path, r.status) for r in cluster.requests if r.status != 200] == [("GET", f"/{INDEX}/_mapping", 404)]


def test_an_8x_server_accepts_what_the_client_sends(start_cluster, sleeps, subset_personas, item_ids, tmp_path):
    cluster = start_cluster("es", es_version="8.17.0", strict_media_types=True)
    build(cluster, subset_personas, tmp_path / "failed.jsonl")
    assert set(cluster.docs[INDEX]) == set(item_ids)
