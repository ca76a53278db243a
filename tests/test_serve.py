"""`p4r serve`: the JSON API on a real uvicorn server over a real embedded index and the packaged encoder.
Every answer is checked against the library called in-process on the same index."""

from __future__ import annotations

import json

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from conftest import read_jsonl
from serve_support import serve

from p4r_search import EmbeddedBackend, Recommender, SearchOptions, UserInput
from p4r_search.serve import Limits


@pytest.fixture(scope="module")
def library(subset_index, encoder):
    return Recommender(EmbeddedBackend(subset_index), encoder=encoder)


def history_of(subset, user: str) -> tuple[str, ...]:
    rows = sorted((r for r in read_jsonl(subset["interactions"]) if r["user_id"] == user), key=lambda r: r["timestamp"])
    return tuple(r["item_id"] for r in rows)


def same_hits(answer: dict, hits) -> None:
    assert [h["item_id"] for h in answer["hits"]] == [h.item_id for h in hits]
    assert [h["score"] for h in answer["hits"]] == pytest.approx([h.score for h in hits], abs=1e-6)
    assert [h["persona"]["name"] for h in answer["hits"]] == [h.persona.name for h in hits]


def test_recommend_for_a_user_equals_the_library(http, library, subset):
    answer = http.post("/v1/recommend", json={"user_id": "demo-petite-dresses", "k": 5}).json()
    same_hits(answer, library.recommend(UserInput(history=history_of(subset, "demo-petite-dresses")), SearchOptions(k=5)))
    assert answer["hits"][0]["evidence"], "each hit carries the evidence of its persona"
    assert answer["generation"] >= 1 and answer["took_ms"] > 0 and answer["skipped"] == {"history": [], "candidates": []}
    seen = set(history_of(subset, "demo-petite-dresses"))
    assert not seen & {h["item_id"] for h in answer["hits"]}


@pytest.mark.parametrize("options", [
    {"keywords": "soft stretch", "fusion": "rrf", "keyword_weight": 0.7},
    {"keywords": "dress", "mode": "rescore", "window": 5, "persona_weight": 0.8},
    {"mode": "exact", "filters": {"categories": ["Dresses"]}},
])
def test_text_keywords_modes_and_filters_equal_the_library(http, library, options):
    answer = http.post("/v1/recommend", json={"text": "a flattering dress for a short woman", "k": 4, **options})
    assert answer.status_code == 200, answer.text
    lib = {"filters": {f: tuple(v) for f, v in options.get("filters", {}).items()}, "k": 4}
    lib.update({k: v for k, v in options.items() if k not in ("filters", "window")})
    if "window" in options:
        lib["num_candidates"] = options["window"]
    hits = library.recommend(UserInput(text="a flattering dress for a short woman"), SearchOptions(**lib))
    same_hits(answer.json(), hits)
    if "keywords" in options:
        assert {"bm25", "cosine"} <= set(answer.json()["hits"][0]["scores"])


def test_candidates_in_the_callers_order(http, library, subset):
    items = [i["item_id"] for i in read_jsonl(subset["items"])][:6]
    body = {"history": list(history_of(subset, "demo-casual-denim")), "candidates": items + ["no-such-item"],
            "candidate_weight": 0.3, "k": 6}
    answer = http.post("/v1/recommend", json=body).json()
    assert answer["skipped"]["candidates"] == ["no-such-item"]
    user = UserInput(history=history_of(subset, "demo-casual-denim"))
    options = SearchOptions(k=6, candidate_ids=tuple(items), candidate_weight=0.3)
    same_hits(answer, library.recommend(user, options))


def test_candidate_scores_fused_as_the_library_and_refused_when_not_finite(http, library, subset):
    items = [i["item_id"] for i in read_jsonl(subset["items"])][:5]
    scores = [5.0, 4.0, 0.5, 0.2, 0.1]
    body = {"history": list(history_of(subset, "demo-casual-denim")), "candidates": items, "candidate_weight": 0.3,
            "candidate_scores": scores, "k": 5}
    answer = http.post("/v1/recommend", json=body)
    assert answer.status_code == 200
    options = SearchOptions(k=5, candidate_ids=tuple(items), candidate_weight=0.3, candidate_scores=tuple(scores))
    same_hits(answer.json(), library.recommend(UserInput(history=history_of(subset, "demo-casual-denim")), options))
    for bad in ("[1.0, 2.0]", "[1.0, 2.0, 3.0, 4.0, 1e400]", "[1.0, 2.0, 3.0, 4.0, Infinity]"):
        text = json.dumps({**body, "candidate_scores": "BAD"}).replace('"BAD"', bad)
        refused = http.post("/v1/recommend", content=text, headers={"content-type": "application/json"})
        assert refused.status_code == 422, refused.text


def test_explain_equals_the_library(http, library, subset):
    history = history_of(subset, "demo-petite-dresses")
    item = http.post("/v1/recommend", json={"history": list(history), "k": 1}).json()["hits"][0]["item_id"]
    answer = http.post("/v1/explain", json={"history": list(history), "item_id": item})
    assert answer.status_code == 200
    assert answer.json() == library.explain(UserInput(history=history), item).model_dump(mode="json")
    assert answer.json()["rank"] == 1 and answer.json()["contributions"]


def test_item_personas_and_index_info(http, subset_index):
    backend = EmbeddedBackend(subset_index)
    item = backend.item_ids()[0]
    card = http.get(f"/v1/items/{item}").json()
    assert card == backend.item_card(item).model_dump(mode="json")
    assert len(card["personas"]) >= 2 and all(p["evidence"] for p in card["personas"])
    info = http.get("/v1/index").json()
    assert info["items"] == len(backend) and info["personas"] == len(backend.vectors())
    assert info["model"] == backend.model_name and info["dim"] == 384 and info["generation"] == backend.meta.generation
    assert http.get("/health").json() == {"status": "ok"}
    assert http.get("/ready").json()["status"] == "ready"


def test_users_from_the_interactions_file(http, subset):
    users = http.get("/v1/users").json()
    assert {"user_id": "demo-petite-dresses", "interactions": len(history_of(subset, "demo-petite-dresses"))} in users
    assert http.get("/v1/users/demo-casual-denim").json()["history"] == list(history_of(subset, "demo-casual-denim"))


@pytest.mark.parametrize(("body", "field", "reason"), [
    ({"text": "x", "k": 0}, ["body", "k"], "greater than or equal to 1"),
    ({"text": "x", "colour": "red"}, ["body", "colour"], "Extra inputs are not permitted"),
    ({"text": "x", "fusion": "rrf"}, ["body"], "fusion only act with keywords"),
    ({"text": "x", "window": 5}, ["body"], "window is the rescore window"),
    ({"text": "x", "mode": "rescore"}, ["body"], "needs keywords"),
    ({"text": "x", "filters": {"colour": ["red"]}}, ["body"], "invalid filter field 'colour'"),
    ({"user_id": "demo-casual-denim", "history": ["a"]}, ["body"], "not both"),
    ({"k": 3}, ["body"], "give a user_id, a history or a text"),
    ({"text": "x", "mode": "semantic"}, ["body", "mode"], "Input should be 'knn', 'exact' or 'rescore'"),
])
def test_invalid_requests_get_422_with_the_field_and_the_reason(http, body, field, reason):
    answer = http.post("/v1/recommend", json=body)
    assert answer.status_code == 422
    errors = answer.json()["detail"]
    assert any(e["loc"] == field and reason in e["msg"] for e in errors), errors


@pytest.mark.parametrize(("path", "body", "needle"), [
    ("/v1/recommend", {"user_id": "nobody"}, "user 'nobody' has no history"),
    ("/v1/recommend", {"history": ["gone-1", "gone-2"]}, "none of the history's 2 item(s) is in the index"),
    ("/v1/explain", {"text": "dress", "item_id": "gone"}, "item 'gone' is not in the index"),
])
def test_unknown_users_and_items_get_404(http, path, body, needle):
    answer = http.post(path, json=body)
    assert answer.status_code == 404 and needle in answer.json()["detail"]
    assert http.get("/v1/items/gone").status_code == 404
    assert http.get("/v1/users/nobody").status_code == 404


def test_the_openapi_document_publishes_the_library_models(http):
    spec = http.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"RecommendRequest", "RecommendResponse", "Hit", "Explanation", "ItemCard", "IndexInfo"} <= set(schemas)
    assert set(spec["paths"]) >= {"/v1/recommend", "/v1/explain", "/v1/items/{item_id}", "/v1/index", "/health", "/ready"}


def test_concurrent_requests_get_the_same_answers_as_one_at_a_time(http, server, subset):
    bodies = [{"user_id": u, "k": 5} for u in ("demo-petite-dresses", "demo-casual-denim")] + \
             [{"text": t, "k": 5, "keywords": "dress"} for t in ("summer", "office wear", "cosy winter")]
    expected = [http.post("/v1/recommend", json=b).json()["hits"] for b in bodies]

    def ask(n: int):
        with server.client() as client:
            return n % len(bodies), client.post("/v1/recommend", json=bodies[n % len(bodies)])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(64)))
    assert all(a.status_code == 200 for _, a in answers)
    assert all(a.json()["hits"] == expected[n] for n, a in answers)


def test_an_api_key_guards_the_api_not_the_health_checks(subset_index, subset, encoder):
    with serve(subset_index, encoder, subset["interactions"], api_key="s3cret-key") as live, live.client() as http:
        assert http.get("/v1/index").status_code == 401
        assert http.get("/v1/index", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/v1/index", headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        assert http.get("/v1/index", headers={"X-API-Key": "s3cret-key"}).status_code == 200
        assert http.get("/health").status_code == 200 and http.get("/").status_code == 200


def test_a_full_queue_answers_503_with_retry_after_at_once(subset_index, encoder):
    limits = Limits(workers=1, queue=0, timeout_s=30, reload_interval_s=60)
    with serve(subset_index, encoder, limits=limits) as live:
        def ask(n: int) -> httpx.Response:
            with live.client() as client:
                return client.post("/v1/recommend", json={"text": f"a warm coat for winter walks {n}", "k": 5})

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(ask, range(24)))
        codes = [a.status_code for a in answers]
        assert set(codes) == {200, 503} and codes.count(503) >= 1, codes
        assert all(a.headers["Retry-After"] == "1" for a in answers if a.status_code == 503)
        with live.client() as client:  # and it keeps serving
            assert client.post("/v1/recommend", json={"text": "coat"}).status_code == 200


def test_a_slow_answer_gets_503_not_a_hang(subset_index, encoder):
    with serve(subset_index, encoder, limits=Limits(timeout_s=0.001, reload_interval_s=60)) as live, live.client() as http:
        started = time.monotonic()
        answer = http.post("/v1/recommend", json={"text": "a long walk in the rain, dressed for it", "k": 5})
        assert answer.status_code == 503 and "did not answer within" in answer.json()["detail"]
        assert answer.headers["Retry-After"] == "5" and time.monotonic() - started < 5


def test_a_cluster_that_does_not_answer_gives_503(encoder):
    """A real Elasticsearch client aimed at a loopback port where nothing listens."""
    from serve_support import LiveServer

    from p4r_search.backends.cluster import ClientTransport, ClusterBackend
    from p4r_search.backends.connect import ConnectionSettings, make_client
    from p4r_search.clusters.model import Cluster, Distribution, parse_version
    from p4r_search.serve import ServedIndex, Service, SharedEncoder, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    settings = ConnectionSettings(Distribution.ELASTICSEARCH, f"http://127.0.0.1:{port}", timeout=2)
    backend = ClusterBackend(ClientTransport(make_client(settings, max_retries=0), Distribution.ELASTICSEARCH),
                             Cluster(Distribution.ELASTICSEARCH, parse_version("8.19.0"), "basic"), "items")
    service = Service(ServedIndex.cluster(backend, "es index items"), SharedEncoder(encoder), engine="es")
    with LiveServer(create_app(service)) as live, live.client() as http:
        answer = http.post("/v1/recommend", json={"text": "a dress"})
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
        assert "the cluster did not answer" in answer.json()["detail"]
        assert http.get("/health").status_code == 200


def test_p4r_serve_refuses_other_hosts_without_a_key_and_never_logs_it(subset_index, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "P4R_SERVE_API_KEY"}
    cmd = [sys.executable, "-m", "p4r_search", "serve", "--index", str(subset_index)]
    refused = subprocess.run([*cmd, "--host", "0.0.0.0"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 64 and "set P4R_SERVE_API_KEY" in refused.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*cmd, "--host", "0.0.0.0", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env={**env, "P4R_SERVE_API_KEY": "k-e-y-42"})
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                    time.sleep(0.5)
            assert httpx.get(f"{url}/v1/index", headers={"X-API-Key": "wrong-key"}).status_code == 401
            assert httpx.get(f"{url}/v1/index", headers={"Authorization": "Bearer k-e-y-42"}).status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            # uvicorn shuts down gracefully, then re-raises the signal it caught (so: killed by SIGTERM)
            assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    text = log.read_text()
    assert "Finished server process" in text
    assert "API key required" in text and "k-e-y-42" not in text and "wrong-key" not in text


def test_the_users_own_reviews_make_the_profile_when_asked(subset_index, subset, encoder, library, tmp_path):
    """profile source `reviews`: sent in the request, or for a user_id from the service's --reviews file."""
    from conftest import write_jsonl
    from serve_support import LiveServer, make_service

    from p4r_search.profile import ProfileConfig
    from p4r_search.serve import create_app

    user = "demo-casual-denim"
    history = history_of(subset, user)
    texts = {i: f"my review of {i}: soft stretchy denim, fits well" for i in history[-3:]}
    body = {"history": list(history), "k": 4, "profile": {"source": "reviews"}}
    own = Recommender(library.backend, encoder=encoder, profile=ProfileConfig(source="reviews"))
    expected = own.recommend(UserInput(history=history, reviews=texts), SearchOptions(k=4))
    with serve(subset_index, encoder) as live, live.client() as http:
        refused = http.post("/v1/recommend", json=body)
        assert refused.status_code == 422 and "needs the user's own reviews" in refused.json()["detail"][0]["msg"]
        same_hits(http.post("/v1/recommend", json={**body, "reviews": texts}).json(), expected)
    reviews = write_jsonl(tmp_path / "own.jsonl", [{"review_id": f"own-{i}", "item_id": i, "user_id": user, "text": t}
                                                    for i, t in texts.items()])
    service = make_service(subset_index, encoder, subset["interactions"], reviews)
    with LiveServer(create_app(service)) as live, live.client() as http:
        answer = http.post("/v1/recommend", json={"user_id": user, "k": 4, "profile": {"source": "reviews"}})
        same_hits(answer.json(), expected)


def test_a_bad_interactions_line_stops_the_start_with_file_and_line(subset_index, tmp_path):
    from conftest import run_cli

    bad = tmp_path / "interactions.jsonl"
    bad.write_text('{"user_id": "u1", "item_id": "1080", "timestamp": "2026-01-01T00:00:00Z"}\n{"user_id": "u1",\n')
    result = run_cli("serve", "--index", subset_index, "--interactions", bad, "--port", "1", expect=65)
    assert f"{bad}:2: malformed JSON" in result.output
    missing = run_cli("serve", "--index", tmp_path / "nowhere", "--port", "1", expect=66)
    assert "no such index directory" in missing.output
