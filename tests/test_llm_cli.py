"""`p4r personas generate --generator llm` end to end: kill and resume, the cost cap, exit codes, the report.

The endpoint is the FakeOpenAI loopback stand-in (no real provider is reachable here); the CLI, the packaged
embedding model and the files are real. The kill test runs the CLI in a child process and kills it with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli
from fake_openai import FakeOpenAI, malformed_json, prompt_text
from llm_helpers import MODEL, persona_responder, small_examples

from p4r_search.personas.runner import read_personas


def slow_responder(delay_s: float):
    def respond(request):
        time.sleep(delay_s)
        return persona_responder(request)

    return respond


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return small_examples(tmp_path, n_items=8, max_reviews=3)


def generate_args(paths, out, base_url, *extra):
    return ["personas", "generate", "--items", paths["items"], "--reviews", paths["reviews"], "-o", out,
            "--generator", "llm", "--model", MODEL, "--base-url", base_url, "--no-progress", *extra]


def titles_requested(fake, since: float = 0.0) -> list[str]:
    found = []
    for r in fake.requests:
        if r.path == "/v1/chat/completions" and r.time >= since:
            text = prompt_text(r.body)
            found.append(text.split("Title: ", 1)[1].split("\n", 1)[0])
    return found


def test_a_killed_run_resumes_with_nothing_lost_or_redone(env, tmp_path):
    out = tmp_path / "personas.jsonl"
    titles = {json.loads(line)["item_id"]: json.loads(line)["title"] for line in env["items"].read_text().splitlines()}
    with FakeOpenAI(slow_responder(0.5)) as fake:
        args = [sys.executable, "-m", "p4r_search", *map(str, generate_args(
            env, out, fake.base_url, "--concurrency", "2", "--no-cache"))]
        child = subprocess.Popen(args, env={**os.environ, "PYTHONPATH": os.getcwd()}, start_new_session=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while (not out.exists() or len(out.read_text().splitlines()) < 3) and time.monotonic() < deadline:
            assert child.poll() is None, child.stdout.read().decode()
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        killed_at = time.time()
        finished_before = set(read_personas(out))
        assert 3 <= len(finished_before) < 8

        run_cli(*generate_args(env, out, fake.base_url, "--concurrency", "2", "--no-cache"))
        again = titles_requested(fake, since=killed_at)

    assert set(read_personas(out)) == set(titles)  # nothing lost
    assert not {titles[i] for i in finished_before} & set(again)  # nothing finished is redone
    assert len(again) == len(set(again)) == 8 - len(finished_before)


def test_the_cost_cap_stops_cleanly_and_a_rerun_finishes(env, tmp_path):
    out = tmp_path / "personas.jsonl"
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": {MODEL: {"input": 1000.0, "output": 1000.0}}}))
    with FakeOpenAI(persona_responder) as fake:
        first = run_cli(*generate_args(env, out, fake.base_url, "--prices", prices, "--max-cost", "0.5", "--json"),
                        expect=75)
        summary = json.loads(first.stdout)
        per_item = summary["cost"]["cost_usd"] / summary["generated"]
        assert summary["stopped"] == "the cost cap of $0.5 was reached"
        assert summary["cost"]["cost_usd"] >= 0.5 > summary["cost"]["cost_usd"] - per_item  # stopped at the first
        assert "rerun the same command" in first.output
        report = json.loads((tmp_path / "personas.jsonl.report.json").read_text())
        assert report["cost"] == summary["cost"] and report["generator"]["model"] == MODEL

        second = json.loads(run_cli(*generate_args(env, out, fake.base_url, "--prices", prices, "--json")).stdout)
        assert second["generated"] + summary["generated"] == 8 and second["skipped"] == summary["generated"]
        assert fake.count() == 8


def test_failed_items_give_exit_75_and_name_the_file(env, tmp_path):
    out = tmp_path / "personas.jsonl"
    with FakeOpenAI(persona_responder) as fake:
        fake.script(*[malformed_json()] * 2)
        result = run_cli(*generate_args(env, out, fake.base_url, "--max-attempts", "2"), expect=75)
    assert "1 item(s) failed; see" in result.output and "personas.jsonl.failed.jsonl" in result.output
    assert len(read_personas(out)) == 7


def test_the_ledger_is_printed_and_no_secret_is(env, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    out = tmp_path / "personas.jsonl"
    with FakeOpenAI(persona_responder, api_key="sk-very-secret-value") as fake:
        result = run_cli(*generate_args(env, out, fake.base_url))
    assert "tokens in" in result.output and "total cost" in result.output
    assert "sk-very-secret-value" not in result.output
    assert "sk-very-secret-value" not in (tmp_path / "personas.jsonl.report.json").read_text()


def test_a_wrong_key_is_one_clear_error(env, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    with FakeOpenAI(persona_responder, api_key="right") as fake:
        result = run_cli(*generate_args(env, tmp_path / "p.jsonl", fake.base_url), expect=64)
        assert fake.count() == 1
    assert "refused the request (401)" in result.output


def test_llm_options_are_refused_with_the_extractive_generator(env, tmp_path):
    result = run_cli("personas", "generate", "--items", env["items"], "--reviews", env["reviews"], "-o",
                     tmp_path / "p.jsonl", "--model", "gpt-4o-mini", expect=64)
    assert "--embedding-model" in result.output


def test_max_cost_needs_a_price(env, tmp_path):
    result = run_cli(*generate_args(env, tmp_path / "p.jsonl", "http://127.0.0.1:9/v1", "--max-cost", "1"), expect=64)
    assert "needs a price for model" in result.output
