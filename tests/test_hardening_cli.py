"""Issue 23's command-line defects, each held against the real CLI: a leaked LLM key, non-finite weights, a
corrupted or empty conversion input, a missing cluster client, an id too long to print, a byte-order mark.

The LLM endpoint is the FakeOpenAI loopback stand-in (no provider is reachable here), told to echo the
Authorization header into its errors as some gateways do. The missing client is simulated by hiding the
installed package from `import` (it cannot be uninstalled from the shared environment for one test)."""

from __future__ import annotations

import gzip
import json
import random
import string
import sys

import pytest
from conftest import run_cli
from fake_openai import FakeOpenAI, server_error
from llm_helpers import MODEL, persona_responder, small_examples

SECRET = "sk-proj-very-secret-1234567890"


@pytest.fixture
def llm_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return small_examples(tmp_path, n_items=2, max_reviews=3)


def generate(paths, out, base_url, *extra, expect):
    return run_cli("personas", "generate", "--items", paths["items"], "--reviews", paths["reviews"], "-o", out,
                   "--generator", "llm", "--model", MODEL, "--base-url", base_url, "--no-progress", *extra,
                   expect=expect)


def test_a_key_echoed_by_the_endpoint_on_a_401_is_not_printed(llm_env, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeOpenAI(persona_responder, api_key="another-key", echo_credentials=True) as fake:
        result = generate(llm_env, tmp_path / "p.jsonl", fake.base_url, expect=64)
    assert "refused the request (401)" in result.output
    assert SECRET not in result.output and "Bearer [redacted]" in result.output


def test_a_key_echoed_in_a_400_is_not_written_to_the_failed_items_file(llm_env, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    out = tmp_path / "p.jsonl"
    with FakeOpenAI(persona_responder, echo_credentials=True) as fake:
        fake.script(*[server_error(400)] * 3, key="Legwear #169")  # one per structured-output form tried
        result = generate(llm_env, out, fake.base_url, "--max-attempts", "1", expect=75)
    failed = (tmp_path / "p.jsonl.failed.jsonl").read_text()
    assert json.loads(failed)["error"].startswith("BadRequestError") and "[redacted]" in failed
    assert SECRET not in failed and SECRET not in result.output


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity"])
def test_non_finite_weights_are_refused_with_exit_64(subset_index, value):
    result = run_cli("recommend", "--index", subset_index, "--text", "a dress", "--query", "dress",
                     "--persona-weight", value, expect=64)
    assert "--persona-weight" in result.output and "not a finite number" in result.output


def test_a_non_finite_gamma_is_refused(subset_index):
    result = run_cli("recommend", "--index", subset_index, "--text", "a dress", "--gamma", "nan", expect=64)
    assert "--gamma" in result.output


def amazon_gzip(path, n=300):
    """Reviews of random words (so that deflate writes dynamic code tables), gzip with no name in its header."""
    rng = random.Random(23)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(5000)]
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as fh:
        for i in range(n):
            line = {"reviewerID": f"U{i}", "asin": f"A{i % 7}", "overall": 5.0, "unixReviewTime": 1472688000,
                    "reviewText": " ".join(rng.choices(words, k=200))}
            fh.write((json.dumps(line) + "\n").encode())
    return path


def test_a_corrupted_gzip_is_exit_65_with_the_file_named(tmp_path):
    source = amazon_gzip(tmp_path / "reviews.json.gz")
    data = bytearray(source.read_bytes())
    data[12:16] = bytes(b ^ 0xFF for b in data[12:16])  # the first block's code tables (after the 10-byte header): zlib.error
    source.write_bytes(bytes(data))
    result = run_cli("data", "convert-amazon", source, "-o", tmp_path / "out", expect=65)
    assert f"{source}:" in result.output and "unreadable compressed data" in result.output


def test_an_empty_input_is_refused_and_leaves_a_converted_folder_as_it_was(tmp_path):
    out = tmp_path / "out"
    run_cli("data", "convert-amazon", amazon_gzip(tmp_path / "good.json.gz"), "-o", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    empty = tmp_path / "empty.json.gz"
    with gzip.open(empty, "wb"):
        pass
    result = run_cli("data", "convert-amazon", empty, "-o", out, expect=65)
    assert "no item with a review text in 0 line(s) read" in result.output and "unchanged" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize(("engine", "module", "extra"), [("es", "elasticsearch", "es"),
                                                         ("opensearch", "opensearchpy", "opensearch")])
def test_a_cluster_engine_without_its_client_says_what_to_install(monkeypatch, engine, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError, as when not installed
    result = run_cli("recommend", "--engine", engine, "--url", "http://127.0.0.1:9", "--index", "items",
                     "--text", "a dress", expect=64)
    assert f"pip install 'p4r-search[{extra}]'" in result.output and "Traceback" not in result.output


def test_a_huge_unknown_history_id_is_shown_cut(subset, subset_index):
    known = json.loads(subset["interactions"].read_text().splitlines()[0])["item_id"]
    huge = "x" * 1_000_000
    result = run_cli("recommend", "--index", subset_index, "--history", f"{huge},{known}", "--json")
    note = next(line for line in result.stderr.splitlines() if "skipped" in line) if result.stderr else ""
    assert "1,000,000 characters" in note and len(note) < 300


def test_a_byte_order_mark_at_the_start_of_a_jsonl_file_is_accepted(subset, subset_index, tmp_path):
    lines = subset["interactions"].read_bytes()
    with_bom = tmp_path / "interactions.jsonl"
    with_bom.write_bytes(b"\xef\xbb\xbf" + lines)
    user = json.loads(lines.splitlines()[0])["user_id"]
    result = run_cli("recommend", "--index", subset_index, "--interactions", with_bom, "--user", user, "--json")
    assert json.loads(result.stdout)["hits"]
