"""`p4r serve` against the attacks of an outside review: a history of 100,000 ids, a timed-out request that
kept its worker, a chunked body past the limit, non-finite numbers, a stale reload error, server paths in
answers, the Authorization scheme, invisible texts and blank keywords. Real uvicorn, real index folders,
real sockets; where a backend is wrapped, it still answers from the real index."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time

import numpy as np
import pytest
from serve_support import LiveServer, serve

from p4r_search import EmbeddedBackend, Recommender, SearchOptions, UserInput
from p4r_search import recommend as recommend_module
from p4r_search.errors import ConfigError
from p4r_search.history import MAX_EXAMINED
from p4r_search.serve import Limits, ServedIndex, Service, SharedEncoder, create_app
from p4r_search.serve.state import Snapshot, now


class Spy:
    """The real EmbeddedBackend, counting the ids it is asked to look up; `delay_per_id` makes each lookup
    as slow as a remote cluster would be (see the timeout test)."""

    def __init__(self, backend: EmbeddedBackend, delay_per_id: float = 0.0):
        self.backend, self.delay_per_id = backend, delay_per_id
        self.looked_up = 0  # ids asked for, over every call

    def persona_vectors(self, item_ids):
        self.looked_up += len(item_ids)
        time.sleep(self.delay_per_id * len(item_ids))
        return self.backend.persona_vectors(item_ids)

    def existing_ids(self, item_ids):
        self.looked_up += len(item_ids)
        return self.backend.existing_ids(item_ids)

    def __len__(self) -> int:
        return len(self.backend)

    def __getattr__(self, name):
        return getattr(self.backend, name)


def spied_server(index, encoder, spy: Spy, limits: Limits | None = None) -> LiveServer:
    backend = EmbeddedBackend(index)
    backend.vectors()
    served = ServedIndex(Snapshot(spy, backend.meta.generation, now()), index.name)  # no path: no reloads
    encoder.encode(["warm up"])  # the first encode loads the model: not what these tests time
    return LiveServer(create_app(Service(served, SharedEncoder(encoder)), limits=limits or Limits(reload_interval_s=60)))


@pytest.fixture
def index_copy(subset_index, tmp_path):
    target = tmp_path / "served"
    shutil.copytree(subset_index, target)
    return target


def test_a_history_of_one_id_100000_times_builds_a_profile_from_its_last_n(subset_index, encoder, monkeypatch):
    known = EmbeddedBackend(subset_index).item_ids()[0]
    spy = Spy(EmbeddedBackend(subset_index))
    built = []
    real = recommend_module.interaction_vector
    monkeypatch.setattr(recommend_module, "interaction_vector", lambda *a: built.append(1) or real(*a))
    with spied_server(subset_index, encoder, spy) as live, live.client() as http:
        answer = http.post("/v1/recommend", json={"history": [known] * 100_000, "k": 3})
    assert answer.status_code == 200, answer.text
    assert answer.json()["history"] == [known] * 10 and known not in {h["item_id"] for h in answer.json()["hits"]}
    assert spy.looked_up == 1, "one distinct id, looked up once"
    assert len(built) == 10, "one interaction vector per profile entry (last_n), not per history entry"


def test_100000_distinct_unknown_ids_look_up_a_bounded_recent_end(subset_index, encoder):
    spy = Spy(EmbeddedBackend(subset_index))
    with spied_server(subset_index, encoder, spy) as live, live.client() as http:
        answer = http.post("/v1/recommend", json={"history": [f"unknown-{n}" for n in range(100_000)]})
    assert answer.status_code == 404 and f"none of the history's {MAX_EXAMINED} item(s)" in answer.json()["detail"]
    assert spy.looked_up == MAX_EXAMINED


def test_100000_distinct_ids_some_indexed_exclude_every_seen_item_and_report_what_was_examined(subset_index, encoder):
    items = EmbeddedBackend(subset_index).item_ids()
    old, recent = items[:3], items[3:6]  # `old` lies beyond the lookup bound, `recent` at the end
    unknown = 100_000 - 7
    history = old + [f"unknown-{n}" for n in range(unknown)] + recent[:1] + ["unknown-last"] + recent[1:]
    spy = Spy(EmbeddedBackend(subset_index))
    with spied_server(subset_index, encoder, spy) as live, live.client() as http:
        answer = http.post("/v1/recommend", json={"history": history, "k": len(items)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["history"] == recent, "the profile is made from the indexed items found from the end"
    assert not set(old + recent) & {h["item_id"] for h in body["hits"]}, "every seen item is excluded"
    skipped = body["skipped"]["history"]
    assert len(skipped) == MAX_EXAMINED - len(recent) and skipped[-1] == "unknown-last"
    assert skipped[0] == f"unknown-{unknown - len(skipped) + 1}", "the examined ids, oldest first"
    assert spy.looked_up == MAX_EXAMINED


def test_the_library_walks_the_same_bounded_end(subset_index, encoder):
    backend = Spy(EmbeddedBackend(subset_index))
    items = backend.item_ids()
    recommender = Recommender(backend, encoder=encoder)
    report = recommender.recommend_with_report(UserInput(history=tuple([items[0]] * 100_000 + items[1:4])))
    assert report.history == tuple([items[0]] * 7 + items[1:4]) and backend.looked_up <= 4
    full = Recommender(EmbeddedBackend(subset_index), encoder=encoder)
    assert np.allclose(recommender.profile(UserInput(history=tuple(items * 3))),
                       full.profile(UserInput(history=tuple(items[-10:]))), atol=1e-6)


def test_a_timed_out_request_stops_and_frees_its_worker(subset_index, encoder):
    """Every real stage of a request is fast on this index now, so nothing here is slow on cue: the wrapped
    backend makes each lookup take 0.2 ms per id, as a remote cluster might (it still answers from the real
    index). Looking up all 10,000 ids would take 2 s; the request's deadline is 0.5 s."""
    spy = Spy(EmbeddedBackend(subset_index), delay_per_id=0.0002)
    limits = Limits(workers=1, queue=0, timeout_s=0.5, reload_interval_s=60)
    with spied_server(subset_index, encoder, spy, limits) as live, live.client() as http:
        answer = http.post("/v1/recommend", json={"history": [f"unknown-{n}" for n in range(100_000)]})
        assert answer.status_code == 503 and "did not answer within 0.5 s" in answer.json()["detail"]
        counts = [spy.looked_up]
        while len(counts) < 16 or counts[-1] != counts[-16]:  # 1.5 s unchanged: longer than any one lookup
            time.sleep(0.1)
            counts.append(spy.looked_up)
        assert counts[-1] < MAX_EXAMINED, f"the work went on after its deadline: {counts[-1]} ids looked up"
        assert http.post("/v1/recommend", json={"text": "a warm coat", "k": 2}).status_code == 200, \
            "the worker is free again"


def _send_chunked(sock: socket.socket, chunks, stop: threading.Event, sent: list[int]) -> None:
    try:
        for chunk in chunks:
            if stop.is_set():
                return
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent[0] += len(chunk)
        sock.sendall(b"0\r\n\r\n")
    except OSError:  # the server answered and closed the connection: what is tested
        pass


def test_a_chunked_body_past_the_limit_gets_413_while_it_is_still_sent(index_copy, encoder):
    """50 MiB sent with `Transfer-Encoding: chunked` (no Content-Length): the answer comes once 4 MiB arrived."""
    chunks = [b'{"text": "a dress", "history": [', *([b'"x",' * 16_384] * 800), b'"x"]}']  # 64 KiB pieces
    with serve(index_copy, encoder) as live, live.client() as http:
        with socket.create_connection(("127.0.0.1", live.port)) as sock:
            sock.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            stop, sent = threading.Event(), [0]
            sender = threading.Thread(target=_send_chunked, args=(sock, iter(chunks), stop, sent), daemon=True)
            sender.start()
            answer = b""
            while b"}" not in answer:
                piece = sock.recv(65_536)
                assert piece, f"the connection closed without an answer: {answer!r}"
                answer += piece
            at_answer = sent[0]
            stop.set()
            sender.join(30)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), head
        assert json.loads(body) == {"detail": "the body passed 4,194,304 bytes; at most 4,194,304", "type": "too_large"}
        assert at_answer < 40 * 1024 * 1024, "answered long before the 50 MiB were sent"
        small = iter([b'{"text": ', b'"a warm coat", "k": 2}'])  # chunked too, under the limit
        assert http.post("/v1/recommend", content=small, headers={"content-type": "application/json"}).status_code == 200
        assert http.get("/ready").status_code == 200


BASE = {"text": "a warm coat", "keywords": "warm"}
CANDIDATES = {"text": "a warm coat", "candidates": ["a", "b"], "candidate_weight": 0.5}


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN", "1e400"])
@pytest.mark.parametrize(("body", "field", "loc"), [
    (BASE, "persona_weight", ["persona_weight"]),
    (BASE, "keyword_weight", ["keyword_weight"]),
    ({**CANDIDATES, "candidate_weight": "BAD"}, None, ["candidate_weight"]),
    ({**CANDIDATES, "candidate_scores": [1.0, "BAD"]}, None, ["candidate_scores", 1]),
    ({"text": "a coat", "profile": {"gamma": "BAD"}}, None, ["profile", "gamma"]),
    ({"text": "a coat", "profile": {"text_weight": "BAD"}}, None, ["profile", "text_weight"]),
])
def test_non_finite_numbers_are_refused_in_every_float_field(http, value, body, field, loc):
    body = {**body, field: "BAD"} if field else body
    answer = http.post("/v1/recommend", content=json.dumps(body).replace('"BAD"', value),
                       headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert any(e["loc"] == ["body", *loc] for e in answer.json()["detail"]), answer.json()


def wait_for_info(http, predicate, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while not predicate(info := http.get("/v1/index").json()):
        assert time.monotonic() < deadline, info
        time.sleep(0.05)
    return info


def test_the_reload_error_clears_when_the_served_folder_is_back(index_copy, encoder, tmp_path):
    with serve(index_copy, encoder) as live, live.client() as http:
        away = tmp_path / "away"
        index_copy.rename(away)
        assert "is missing" in wait_for_info(http, lambda i: i["reload_error"] is not None)["reload_error"]
        away.rename(index_copy)  # the same folder again: same fingerprint as the one served
        assert wait_for_info(http, lambda i: i["reload_error"] is None)["reload_error"] is None
        broken = tmp_path / "broken"
        shutil.copytree(index_copy, broken)
        for folder in broken.glob("vectors-*"):
            shutil.rmtree(folder)
        index_copy.rename(away)
        broken.rename(index_copy)
        info = wait_for_info(http, lambda i: "cannot open the new index yet" in (i["reload_error"] or ""))
        assert str(tmp_path) not in info["reload_error"]
        index_copy.rename(broken)
        away.rename(index_copy)
        assert wait_for_info(http, lambda i: i["reload_error"] is None)["generation"] == info["generation"]


def test_answers_name_no_server_paths_and_do_not_echo_long_ids(subset_index, subset, encoder):
    with serve(subset_index, encoder, subset["interactions"]) as live, live.client() as http:
        user = http.get("/v1/users/nobody")
        item = http.get("/v1/items/gone")
        info = http.get("/v1/index").json()
        long_id = "u" * 400
        long_user = http.get(f"/v1/users/{long_id}")
        huge = http.get(f"/v1/users/{'u' * 10_000}")  # uvicorn's h11 refuses a request line over 16 KiB itself
    assert user.status_code == 404 and user.json()["detail"] == ("user 'nobody' has no history "
                                                           "(no events, not in --interactions)")
    assert item.status_code == 404 and str(subset_index) not in item.json()["detail"]
    assert info["index"] == subset_index.name
    assert long_user.status_code == 404 and len(long_user.json()["detail"]) < 150 and "(400 characters)" in long_user.text
    assert huge.status_code == 422 and len(huge.content) < 500


@pytest.mark.parametrize(("headers", "status"), [
    ({"Authorization": "Bearer s3cret-key"}, 200),
    ({"Authorization": "bearer s3cret-key"}, 200),
    ({"Authorization": "BEARER  s3cret-key"}, 200),
    ({"X-API-Key": "s3cret-key"}, 200),
    ({"Authorization": "s3cret-key"}, 401),
    ({"Authorization": "Basic s3cret-key"}, 401),
    ({"Authorization": "Bearer"}, 401),
    ({"Authorization": "bearer wrong"}, 401),
])
def test_the_authorization_scheme_is_required_and_case_insensitive(subset_index, encoder, headers, status):
    with serve(subset_index, encoder, api_key="s3cret-key") as live, live.client() as http:
        answer = http.get("/v1/index", headers=headers)
    assert answer.status_code == status and "s3cret-key" not in answer.text


INVISIBLE = ["\x00", "\u200b", "\u200c\u200d", "\u2060", "\ufeff", " \x00\t\u200b\u00ad", "\U000e0001"]


@pytest.mark.parametrize("text", INVISIBLE)
def test_a_text_of_invisible_characters_counts_as_no_text(http, subset_index, encoder, text):
    answer = http.post("/v1/recommend", json={"text": text})
    assert answer.status_code == 422 and "give a user_id, a history or a text" in answer.json()["detail"][0]["msg"]
    with pytest.raises(ConfigError, match="give a history"):
        UserInput(text=text)
    recommender = Recommender(EmbeddedBackend(subset_index), encoder=encoder)
    history = tuple(EmbeddedBackend(subset_index).item_ids()[:3])
    assert np.array_equal(recommender.profile(UserInput(history=history, text=text)),
                          recommender.profile(UserInput(history=history))), "the text is ignored beside a history"


@pytest.mark.parametrize("keywords", ["", "   ", "\u200b"])
def test_empty_or_blank_keywords_are_refused_by_the_service_and_the_library(http, keywords):
    answer = http.post("/v1/recommend", json={"text": "a coat", "keywords": keywords})
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "keywords"]
    with pytest.raises(ConfigError, match="keywords .* are empty"):
        SearchOptions(keywords=keywords)


@pytest.mark.parametrize(("path", "body", "valid"), [
    ("/v1/recommend", {"text": "a coat"}, True),
    ("/v1/recommend", {"history": ["gone"], "text": "\u200b"}, True),
    ("/v1/recommend", {"text": "a coat", "keywords": "warm", "mode": "rescore", "window": 5}, True),
    ("/v1/recommend", {"text": "a coat", "candidates": ["a"], "candidate_weight": 0.5, "candidate_scores": [1]}, True),
    ("/v1/recommend", {"text": "\u200b\x00"}, False),
    ("/v1/recommend", {"user_id": "u", "history": None}, False),
    ("/v1/recommend", {"text": "a coat", "fusion": "rrf"}, False),
    ("/v1/recommend", {"text": "a coat", "persona_weight": 0.3}, False),
    ("/v1/recommend", {"text": "a coat", "window": 5}, False),
    ("/v1/recommend", {"text": "a coat", "keywords": "warm", "mode": "rescore", "num_candidates": 5}, False),
    ("/v1/recommend", {"text": "a coat", "keywords": "warm", "mode": "exact"}, False),
    ("/v1/recommend", {"text": "a coat", "keywords": "w", "persona_weight": 0, "keyword_weight": 0}, False),
    ("/v1/recommend", {"text": "a coat", "keywords": "w", "candidates": ["a"], "candidate_weight": 0.5}, False),
    ("/v1/recommend", {"text": "a coat", "candidates": ["a"], "candidate_scores": [1]}, False),
    ("/v1/recommend", {"history": ["a"], "profile": {"source": "reviews"}}, False),
    ("/v1/recommend", {"text": "a coat", "filters": {"colour": ["red"]}}, False),
    ("/v1/explain", {"item_id": "0"}, False),
    ("/v1/explain", {"item_id": "0", "text": "a coat"}, True),
])
def test_the_openapi_document_states_the_cross_field_rules_the_service_applies(http, path, body, valid):
    import jsonschema_rs

    spec = http.get("/openapi.json").json()
    name = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    document = {**spec, "$ref": name}  # the request's schema, its references resolved in the document
    assert jsonschema_rs.validator_for(document).is_valid(body) is valid
    answer = http.post(path, json=body)
    assert (answer.status_code != 422) is valid, answer.text


def test_every_status_is_documented_with_its_body(http):
    spec = http.get("/openapi.json").json()
    for path, method, statuses in [("/v1/recommend", "post", {"400", "404", "413", "422", "501", "503"}),
                                   ("/v1/explain", "post", {"400", "404", "413", "422", "501", "503"}),
                                   ("/v1/items/{item_id}", "get", {"404", "422", "503"}),
                                   ("/v1/index", "get", {"503"}),
                                   ("/v1/users/{user_id}", "get", {"404", "422"})]:
        documented = spec["paths"][path][method]["responses"]
        assert statuses <= set(documented), path
        assert documented["404" if "404" in statuses else "503"]["content"]["application/json"]["schema"] == \
            {"$ref": "#/components/schemas/ErrorBody"}
    assert set(spec["components"]["schemas"]["ErrorBody"]["properties"]) == {"detail", "type"}
