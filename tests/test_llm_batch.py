"""Batch API mode through the real `openai` client and the real CLI.

The Files and Batches endpoints are the FakeOpenAI loopback stand-in (tests/fake_openai.py): no real
provider is reachable here. It implements the endpoints the code uses, in the shapes of the client's types.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from fake_openai import FakeOpenAI, content, malformed_json
from llm_helpers import MODEL, persona_responder, personas_answer, small_examples

from p4r_search.personas.runner import read_personas


@pytest.fixture
def fake():
    with FakeOpenAI(persona_responder, batch_polls=None) as server:  # batches finish on `complete_batch`
        yield server


@pytest.fixture
def env(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return small_examples(tmp_path, n_items=4, max_reviews=4)


def submit(paths, out, *extra, expect=0):
    return run_cli("personas", "batch", "submit", "--items", paths["items"], "--reviews", paths["reviews"], "-o", out,
                   "--model", MODEL, "--json", *extra, expect=expect)


def test_submit_status_collect_round_trip(fake, env, tmp_path):
    out = tmp_path / "personas.jsonl"
    (row,) = json.loads(submit(env, out).stdout)
    assert row["status"] == "validating" and row["items"] == 4
    lines = [json.loads(line) for line in (tmp_path / "personas.jsonl.batch/requests-0000.jsonl").read_text().splitlines()]
    assert {line["url"] for line in lines} == {"/v1/chat/completions"} and len(lines) == 4
    assert lines[0]["body"]["response_format"]["type"] == "json_schema"

    assert json.loads(submit(env, out).stdout)[0]["items"] == 4  # resubmit: nothing new is sent
    assert fake.count("/v1/batches") == 1

    status = run_cli("personas", "batch", "status", "-o", out, "--json")
    assert json.loads(status.stdout)[0]["status"] == "in_progress"  # the stand-in moves on at each retrieve
    collect = json.loads(run_cli("personas", "batch", "collect", "-o", out, "--json").stdout)
    assert (collect["generated"], collect["waiting_batches"]) == (0, 1)  # not finished yet: nothing collected

    fake.complete_batch(row["batch_id"])
    collect = json.loads(run_cli("personas", "batch", "collect", "-o", out, "--json").stdout)
    assert (collect["generated"], collect["failed"], collect["collected_batches"]) == (4, 0, 1)
    records = read_personas(out)
    assert len(records) == 4 and all(r.generator.name == "llm" for r in records.values())
    assert collect["cost"]["requests"] == 4 and collect["cost"]["cost_usd"] is None  # the stand-in model is unpriced
    again = json.loads(run_cli("personas", "batch", "collect", "-o", out, "--json").stdout)
    assert again["generated"] == 0 and len(out.read_text().splitlines()) == 4  # collected once only
    assert json.loads(submit(env, out).stdout) == []  # everything is done


def test_invalid_batch_answers_are_failed_and_resent_by_the_next_submit(fake, env, tmp_path):
    out = tmp_path / "personas.jsonl"
    titles = [json.loads(line)["title"] for line in env["items"].read_text().splitlines()]
    fake.script(malformed_json(), key=f"Title: {titles[0]}")
    fake.script(content(personas_answer([], evidence=[["R42"], ["R43"]])), key=f"Title: {titles[1]}")
    (row,) = json.loads(submit(env, out).stdout)
    fake.complete_batch(row["batch_id"])
    result = run_cli("personas", "batch", "collect", "-o", out, "--json", expect=75)
    assert json.loads(result.stdout)["failed"] == 2
    failed = [json.loads(line) for line in (tmp_path / "personas.jsonl.failed.jsonl").read_text().splitlines()]
    assert len(failed) == 2 and any("not valid JSON" in f["error"] for f in failed)
    assert any("cites no review" in f["error"] for f in failed)
    assert len(read_personas(out)) == 2

    rows = json.loads(submit(env, out).stdout)  # the two failed items go out again
    assert [r["items"] for r in rows] == [2]
    fake.complete_batch(rows[0]["batch_id"])
    run_cli("personas", "batch", "collect", "-o", out, "--json")
    assert len(read_personas(out)) == 4


def test_submit_resumes_after_a_crash_between_upload_and_batch_creation(fake, env, tmp_path):
    from p4r_search.personas.llm.batch import BatchState

    out = tmp_path / "personas.jsonl"
    (row,) = json.loads(submit(env, out).stdout)
    state_path = tmp_path / "personas.jsonl.batch/state.json"
    state = BatchState.model_validate_json(state_path.read_text())
    state.batches[0].batch_id, state.batches[0].status = None, "uploaded"  # as if killed right after the upload
    state_path.write_text(state.model_dump_json())
    (resumed,) = json.loads(submit(env, out).stdout)
    assert resumed["batch_id"] != row["batch_id"] and fake.count("/v1/files") == 1  # no second upload


def test_batch_mode_refuses_other_settings_for_the_same_output(env, tmp_path):
    out = tmp_path / "personas.jsonl"
    submit(env, out)
    result = submit(env, out, "--temperature", "0.5", expect=64)
    assert "other settings" in result.output
