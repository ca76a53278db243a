"""Live events and the durable history: the real SQLite store, `p4r events ingest/export` in-process, and
`POST /v1/events` on a real uvicorn server over a real embedded index, followed at once by /v1/recommend."""

from __future__ import annotations

import json
import re
import sqlite3
import threading

import pytest
from conftest import read_jsonl, run_cli, write_jsonl
from serve_support import serve

from p4r_search.errors import ConflictError
from p4r_search.events import Event, HistoryStore
from p4r_search.events.files import export_to_folder, seed_from_files
from p4r_search.models import NON_BLANK_PATTERN

USER = "demo-petite-dresses"


def event(n: int, user: str = "u1", item: str = "a", kind: str = "interaction", **more) -> Event:
    text = more.pop("text", "a fine thing" if kind == "review" else None)
    return Event(event_id=f"e{n}", user_id=user, item_id=item, type=kind, timestamp=1_700_000_000 + n, text=text,
                 **more)


def test_a_batch_is_durable_idempotent_and_whole(tmp_path):
    store = HistoryStore(tmp_path / "h.db")
    batch = [event(1, item="a"), event(2, item="b", kind="review", rating=4), event(3, item="c")]
    assert store.add(batch).model_dump() == {"added": 3, "duplicates": 0}
    assert store.add(batch).model_dump() == {"added": 0, "duplicates": 3}  # a retry changes nothing
    with pytest.raises(ConflictError, match=r"events\[1\]: event_id 'e2' is in the store with other content"):
        store.add([event(4, item="d"), event(2, item="zzz")])
    store.close()
    again = HistoryStore(tmp_path / "h.db")  # a new process would see the same: the file is the state
    assert again.profile_of("u1") == (("a", "b", "c"), {"b": "a fine thing"})  # e4 went with its batch
    assert again.counts() == {"users": 1, "history": 3, "reviews": 1, "events": 3}
    assert sqlite3.connect(tmp_path / "h.db").execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_history_is_in_time_order_and_the_same_interaction_is_one_row(tmp_path):
    store = HistoryStore(tmp_path / "h.db")
    store.add([event(5, item="late"), event(1, item="early")])
    other_id = Event(event_id="other", user_id="u1", item_id="early", type="interaction", timestamp=1_700_000_001)
    assert store.add([other_id]).duplicates == 1  # same user, item and time under another id
    assert store.profile_of("u1")[0] == ("early", "late")
    assert store.user_list(5) == [("u1", 2)]


def test_two_stores_on_one_file_share_the_history_while_one_writes(tmp_path):
    writer, reader = HistoryStore(tmp_path / "h.db"), HistoryStore(tmp_path / "h.db")
    seen: list[int] = []

    def write() -> None:
        for n in range(200):
            writer.add([event(n, item=f"i{n}")])

    thread = threading.Thread(target=write)
    thread.start()
    while thread.is_alive():
        try:
            seen.append(len(reader.profile_of("u1")[0]))
        except LookupError:
            seen.append(0)
    thread.join()
    assert seen == sorted(seen) and len(reader.profile_of("u1")[0]) == 200  # never a half batch, never back


def test_seeding_again_changes_nothing_and_export_round_trips(tmp_path, subset):
    store = HistoryStore(tmp_path / "h.db")
    reviews = write_jsonl(tmp_path / "reviews.jsonl", [
        {"review_id": "r1", "item_id": "x", "user_id": USER, "text": "lovely", "timestamp": 5},
        {"review_id": "r2", "item_id": "y", "text": "no user: not anyone's history"}])
    first = seed_from_files(store, subset["interactions"], reviews)
    assert first == len(read_jsonl(subset["interactions"])) + 1
    assert seed_from_files(store, subset["interactions"], reviews) == 0
    store.add([event(9, user=USER, item="new", kind="review", text="bought it for a wedding")])
    written = export_to_folder(store, tmp_path / "out")
    copy = HistoryStore(tmp_path / "copy.db")
    seed_from_files(copy, tmp_path / "out" / "interactions.jsonl", tmp_path / "out" / "reviews.jsonl")
    assert copy.profile_of(USER) == store.profile_of(USER)
    assert written == {"interactions": first, "reviews": 2}


@pytest.mark.parametrize(("line", "message"), [
    ({"event_id": "x", "user_id": "u", "item_id": "i", "type": "review", "timestamp": 1}, "a review event needs its text"),
    ({"event_id": "x", "user_id": "u", "item_id": "i", "type": "interaction", "timestamp": 1, "text": "hi"},
     "text is for review events"),
    ({"event_id": " ", "user_id": "u", "item_id": "i", "type": "interaction", "timestamp": 1},
     "field 'event_id': must not be empty"),
    ({"event_id": "x", "user_id": "u", "item_id": "i", "type": "interaction", "timestamp": 1.7e12},
     "Unix seconds from 0 to 2e+10"),
    ({"event_id": "x", "user_id": "u", "item_id": "i", "type": "buy", "timestamp": 1}, "field 'type'"),
])
def test_ingest_names_the_bad_line_and_keeps_the_lines_before_it(tmp_path, line, message):
    good = [event(n).model_dump(mode="json", exclude_none=True) for n in range(3)]
    events = write_jsonl(tmp_path / "events.jsonl", [*good, line, event(7).model_dump(mode="json")])
    result = run_cli("events", "ingest", events, "--history-db", tmp_path / "h.db", expect=65)
    assert f"{events}:4:" in result.output and message in result.output and "the lines before it are in" in result.output
    assert HistoryStore(tmp_path / "h.db").counts()["events"] == 3
    fixed = write_jsonl(tmp_path / "events.jsonl", [*good, event(7).model_dump(mode="json")])
    assert "1 event(s) added, 3 already in" in run_cli("events", "ingest", fixed, "--history-db", tmp_path / "h.db").output


def test_ingest_reports_a_conflict_with_its_line(tmp_path):
    store_db = tmp_path / "h.db"
    HistoryStore(store_db).add([event(1, item="a")])
    events = write_jsonl(tmp_path / "e.jsonl", [event(2).model_dump(mode="json"),
                                                {**event(1).model_dump(mode="json"), "item_id": "other"}])
    result = run_cli("events", "ingest", events, "--history-db", store_db, expect=65)
    assert f"{events}:2: event_id 'e1' is in the store with other content" in result.output
    assert HistoryStore(store_db).profile_of("u1")[0] == ("a", "a")  # e2 (line 1) went in; the conflict did not


def test_export_writes_the_files_the_tool_reads(tmp_path):
    store_db = tmp_path / "h.db"
    HistoryStore(store_db).add([event(1, item="a"), event(2, item="b", kind="review")])
    result = run_cli("events", "export", "--history-db", store_db, "-o", tmp_path / "out", "--json")
    assert json.loads(result.output) == {"out": str(tmp_path / "out"), "interactions": 2, "reviews": 1}
    assert [r["item_id"] for r in read_jsonl(tmp_path / "out" / "interactions.jsonl")] == ["a", "b"]
    assert read_jsonl(tmp_path / "out" / "reviews.jsonl")[0]["review_id"] == "e2"
    assert "no history store there" in run_cli("events", "export", "--history-db", tmp_path / "none.db", "-o",
                                               tmp_path / "o2", expect=64).output
    assert "give --history-db PATH" in run_cli("events", "export", "-o", tmp_path / "o3", expect=64).output


def test_the_schema_pattern_is_pythons_whitespace():
    assert all(bool(re.fullmatch(NON_BLANK_PATTERN, chr(c))) is not chr(c).isspace()
               for c in range(0x110000) if not 0xD800 <= c < 0xE000)


def test_recommendations_follow_an_event_at_once(tmp_path, subset_index, subset, encoder):
    with serve(subset_index, encoder, subset["interactions"], history_db=tmp_path / "h.db") as live, \
            live.client() as http:
        before = http.post("/v1/recommend", json={"user_id": USER, "k": 3}).json()
        bought = before["hits"][0]["item_id"]
        body = {"events": [{"event_id": "buy-1", "user_id": USER, "item_id": bought, "type": "interaction",
                            "timestamp": "2030-01-01T00:00:00Z"}]}
        assert http.post("/v1/events", json=body).json() == {"added": 1, "duplicates": 0}
        assert http.post("/v1/events", json=body).json() == {"added": 0, "duplicates": 1}
        after = http.post("/v1/recommend", json={"user_id": USER, "k": 3}).json()
        seen = http.post("/v1/recommend", json={"user_id": USER, "k": 50, "include_seen": True}).json()
        user = http.get(f"/v1/users/{USER}").json()
        newcomer = {"events": [{"event_id": "n1", "user_id": "newcomer", "item_id": bought, "type": "review",
                                "timestamp": 1_900_000_000, "text": "a summer dress for a wedding"}]}
        assert http.post("/v1/events", json=newcomer).status_code == 200
        new_user = http.post("/v1/recommend", json={"user_id": "newcomer", "profile": {"source": "reviews"}})
        conflict = http.post("/v1/events", json={"events": [{**body["events"][0], "item_id": "other"}]})
        invalid = http.post("/v1/events", json={"events": [{**body["events"][0], "type": "review"}]})
    assert bought not in [h["item_id"] for h in after["hits"]]  # excluded as seen, from the next request on
    assert after["history"][-1] == bought and before["history"][-1] != bought  # the profile's newest item
    assert bought in [h["item_id"] for h in seen["hits"]]
    assert user["history"][-1] == bought
    assert new_user.status_code == 200 and new_user.json()["history"] == [bought]
    assert conflict.status_code == 409 and conflict.json()["type"] == "conflict"
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body", "events", 0]
    store = HistoryStore(tmp_path / "h.db")  # what the service wrote is on disk, for the next start
    assert store.profile_of(USER)[0][-1] == bought and store.profile_of("newcomer")[1] == {
        bought: "a summer dress for a wedding"}


def test_the_features_endpoint_gives_the_librarys_rows_for_the_live_history(tmp_path, subset_index, subset, encoder):
    from p4r_search import EmbeddedBackend, UserInput
    from p4r_search.features import Candidate, FeatureExtractor

    items = [r["item_id"] for r in read_jsonl(subset["items"])][:4]
    body = {"user_id": USER, "candidates": [{"item_id": i, "score": n} for n, i in enumerate(items)]
            + [{"item_id": "not-indexed"}]}
    with serve(subset_index, encoder, subset["interactions"], history_db=tmp_path / "h.db") as live, \
            live.client() as http:
        answer = http.post("/v1/features", json=body)
    history, _ = HistoryStore(tmp_path / "h.db").profile_of(USER)
    want = FeatureExtractor(EmbeddedBackend(subset_index), encoder).rows(
        UserInput(history=history), [Candidate(**c) for c in body["candidates"]], user_id=USER)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert [r["item_id"] for r in got] == [*items, "not-indexed"] and got[-1]["features"]["in_index"] == 0
    for row, expected in zip(got, want):
        assert row["features"] == pytest.approx(expected.features, abs=1e-6)
