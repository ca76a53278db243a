"""The README's LLM examples run as written: its three `p4r personas generate --generator llm` commands and its
Python block. OpenAI and Azure cannot be reached here, so `OPENAI_BASE_URL` points the first two and the Python
block at FakeOpenAI (tests/fake_openai.py, a loopback stand-in that answers like the API); the third, the local
server, runs against the real llama.cpp server of the tests (SmolLM2-135M), at its own URL and model name."""

from __future__ import annotations

import json

from conftest import EXAMPLES, read_jsonl, write_jsonl
from fake_openai import FakeOpenAI
from llm_helpers import persona_responder
from test_readme import README_ITEMS, run_block
from test_readme_commands import run_block as run_commands

REVIEWS_PER_ITEM = 4  # a short prompt per item: the local 135M model answers in seconds


def stage(folder) -> None:
    """examples/ with the items the README's Python blocks name, a few real reviews each."""
    (folder / "examples").mkdir()
    items = [i for i in read_jsonl(EXAMPLES / "items.jsonl") if i["item_id"] in README_ITEMS]
    reviews, count = [], {}
    for review in read_jsonl(EXAMPLES / "reviews.jsonl"):
        if review["item_id"] in README_ITEMS and count.get(review["item_id"], 0) < REVIEWS_PER_ITEM:
            count[review["item_id"]] = count.get(review["item_id"], 0) + 1
            reviews.append(review)
    write_jsonl(folder / "examples" / "items.jsonl", items)
    write_jsonl(folder / "examples" / "reviews.jsonl", reviews)


def test_the_llm_commands_run_as_written(tmp_path, monkeypatch, llm_server):
    """The local-server command may end with 75: a 135M model's answer can fail validation for an item, which
    is then listed in personas.failed.jsonl (README: "Do not expect usable personas from it")."""
    stage(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    local = {"http://127.0.0.1:8080/v1": llm_server.base_url, "my-model": llm_server.model}
    with FakeOpenAI(persona_responder) as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        outputs = run_commands("llm", tmp_path, lambda command: [local.get(a, a) for a in command],
                               lambda command: (0, 75) if "--base-url" in command else (0,))
        models = [request["model"] for request in fake.chat_requests()]
    # each command writes personas.jsonl; a later one with other settings replaces the earlier records
    assert models.count("gpt-4o-mini") >= len(README_ITEMS) and models.count("<deployment>") >= len(README_ITEMS)
    records = [json.loads(line) for line in (tmp_path / "personas.jsonl").read_text().splitlines()]
    by_model = {}
    for record in records:
        by_model.setdefault(record["generator"]["model"], set()).add(record["item_id"])
    local_output = next(out for line, out in outputs.items() if "--base-url" in line)
    failed = tmp_path / "personas.failed.jsonl"
    done = by_model.get(llm_server.model, set())
    assert done or failed.is_file(), local_output
    assert done | {json.loads(line)["item_id"] for line in (failed.read_text().splitlines() if failed.is_file() else [])} \
        >= set(README_ITEMS) - done


def test_the_llm_python_block_runs_after_the_first(tmp_path, monkeypatch, capsys):
    stage(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    namespace: dict = {"__name__": "__readme__"}
    with FakeOpenAI(persona_responder) as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        run_block("examples", tmp_path, capsys, namespace)
        out = run_block("llm", tmp_path, capsys, namespace)
        assert fake.count() >= len(README_ITEMS)
    report, ledger = namespace["report"], namespace["ledger"]
    assert report.generated == len(README_ITEMS) and report.failed == 0 and ledger.total_cost > 0
    assert out.split() == [str(report.generated), str(report.failed), str(ledger.total_cost)]
