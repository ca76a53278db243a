"""Faults a running service meets: its index replaced or rebuilt under it, oversized and absurd requests,
bad vectors through the library, a client that hangs up mid-response. Each gets a clear answer and the
service keeps serving. Real uvicorn, real index folders, real sockets."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import threading
import time

import numpy as np
import pytest
from serve_support import serve

from p4r_search import EmbeddedBackend, PersonaQuery
from p4r_search.errors import ConfigError


@pytest.fixture
def index_copy(subset_index, tmp_path):
    target = tmp_path / "served"
    shutil.copytree(subset_index, target)
    return target


class Traffic:
    """A client thread asking for recommendations back to back; every answer's status is kept."""

    def __init__(self, live):
        self.live, self.codes, self.generations = live, [], set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.live.client() as http:
            while not self._stop.is_set():
                answer = http.post("/v1/recommend", json={"text": "a dress for a summer wedding", "k": 3})
                self.codes.append(answer.status_code)
                if answer.status_code == 200:
                    self.generations.add(answer.json()["generation"])

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def wait_for(http, predicate, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = http.get("/v1/index").json()
        if predicate(info):
            return info
        assert time.monotonic() < deadline, f"the service did not follow the index: {info}"
        time.sleep(0.05)


def test_an_index_directory_swapped_under_the_service_is_picked_up_without_dropping_requests(index_copy, encoder):
    replacement = index_copy.with_name("replacement")
    shutil.copytree(index_copy, replacement)
    backend = EmbeddedBackend(replacement, writable=True)
    backend.delete(backend.item_ids()[:2])
    items_after = len(backend)
    with serve(index_copy, encoder) as live, live.client() as http, Traffic(live) as traffic:
        before = http.get("/v1/index").json()
        time.sleep(0.3)
        index_copy.rename(index_copy.with_name("old"))  # the usual swap: two renames
        replacement.rename(index_copy)
        after = wait_for(http, lambda i: i["items"] == items_after)
        time.sleep(0.3)
    assert before["items"] == items_after + 2 and after["reload_error"] is None
    assert traffic.codes and set(traffic.codes) == {200}, "no request failed during the swap"
    assert len(traffic.generations) == 2, "requests were answered by the old, then the new index"


def test_a_rebuild_in_place_is_a_new_generation_served_without_a_restart(index_copy, encoder):
    with serve(index_copy, encoder) as live, live.client() as http, Traffic(live) as traffic:
        first = http.get("/v1/index").json()
        backend = EmbeddedBackend(index_copy, writable=True)
        gone = backend.item_ids()[0]
        backend.delete([gone])
        after = wait_for(http, lambda i: i["generation"] == first["generation"] + 1)
        assert after["items"] == first["items"] - 1
        assert http.get(f"/v1/items/{gone}").status_code == 404
    assert set(traffic.codes) == {200}


def test_a_broken_replacement_keeps_the_old_generation_serving_and_says_why(index_copy, encoder, tmp_path):
    with serve(index_copy, encoder) as live, live.client() as http:
        generation = http.get("/v1/index").json()["generation"]
        good = tmp_path / "good"
        shutil.copytree(index_copy, good)
        shutil.rmtree(index_copy)  # the directory vanishes, then comes back without its vectors
        info = wait_for(http, lambda i: i["reload_error"] is not None)
        assert "is missing" in info["reload_error"]
        shutil.copytree(good, index_copy)
        for folder in index_copy.glob("vectors-*"):
            shutil.rmtree(folder)
        info = wait_for(http, lambda i: "cannot open the new index yet" in (i["reload_error"] or ""))
        assert "p4r index repair" in info["reload_error"] and info["generation"] == generation
        assert http.post("/v1/recommend", json={"text": "a warm coat"}).status_code == 200
        shutil.rmtree(index_copy)
        shutil.copytree(good, index_copy)
        info = wait_for(http, lambda i: i["reload_error"] is None)
        assert info["generation"] == generation


def test_a_megabyte_of_text_gets_a_clear_422_and_a_larger_body_413(index_copy, encoder):
    with serve(index_copy, encoder) as live, live.client() as http:
        answer = http.post("/v1/recommend", json={"text": "lovely dress " * 80_000})
        assert answer.status_code == 422
        error = answer.json()["detail"][0]
        assert error["loc"] == ["body", "text"] and "at most 10000 characters" in error["msg"]
        huge = http.post("/v1/recommend", content=b'{"text": "' + b"x" * 5_000_000 + b'"}',
                         headers={"content-type": "application/json"})
        assert huge.status_code == 413 and "at most 4,194,304" in huge.json()["detail"]
        assert http.post("/v1/recommend", json={"text": "lovely dress"}).status_code == 200


def test_ten_thousand_history_items_are_answered_with_what_was_skipped(index_copy, encoder):
    known = EmbeddedBackend(index_copy).item_ids()[:3]
    history = [f"unknown-{n}" for n in range(9_997)] + known
    with serve(index_copy, encoder) as live, live.client() as http:
        answer = http.post("/v1/recommend", json={"history": history, "k": 5})
        assert answer.status_code == 200
        body = answer.json()
        assert len(body["skipped"]["history"]) == 9_997 and body["history"] == known and body["hits"]
        assert not set(known) & {h["item_id"] for h in body["hits"]}


def test_nan_and_wrong_dimension_vectors_are_refused_by_the_library_and_in_json(index_copy, encoder):
    with serve(index_copy, encoder) as live, live.client() as http:
        backend = EmbeddedBackend(index_copy)
        with pytest.raises(ConfigError, match="not finite"):
            backend.search(PersonaQuery(vector=np.full(384, np.nan, np.float32)))
        with pytest.raises(ConfigError, match="the profile has 100 dimensions; this index holds 384"):
            backend.search(PersonaQuery(vector=np.ones(100, np.float32)))
        body = '{"text": "a coat", "persona_weight": NaN, "keywords": "warm"}'
        answer = http.post("/v1/recommend", content=body, headers={"content-type": "application/json"})
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "persona_weight"]
        assert http.post("/v1/recommend", json={"text": "a coat"}).status_code == 200


def test_a_client_that_hangs_up_mid_response_does_not_disturb_the_service(index_copy, encoder):
    body = json.dumps({"history": [f"unknown-{n}" for n in range(20_000)] + EmbeddedBackend(index_copy).item_ids()[:1],
                       "k": 10}).encode()
    with serve(index_copy, encoder) as live, live.client() as http:
        for read_bytes in (0, 200):  # before any byte of the answer, and in the middle of it
            with socket.create_connection(("127.0.0.1", live.port)) as sock:
                sock.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                if read_bytes:
                    assert len(sock.recv(read_bytes)) > 0
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset, not FIN
        for _ in range(5):
            assert http.post("/v1/recommend", json={"text": "a coat", "k": 3}).status_code == 200
        assert http.get("/ready").status_code == 200
