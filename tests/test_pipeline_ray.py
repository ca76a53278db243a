"""`p4r pipeline run` on a local Ray started by each run (`--num-cpus`: logical CPUs above what the actor pools
hold, since a pool that takes every CPU leaves none for Ray Data's own tasks and the run waits for ever).

Against real parts: Ray Data, the packaged model, the extractive generator, the local llama.cpp server
(`llm_server`), files on disk. The single-machine reference is `p4r personas generate` (the `subset_personas`
fixture) and the vectors `p4r index build` would make from it.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ray_support import p4r, pipeline, require_ray, shard_line_count, shards, without_vectors

from p4r_search.documents import build_documents
from p4r_search.io import LineReader
from p4r_search.models import Review
from p4r_search.personas.runner import read_personas

require_ray()


@pytest.fixture(scope="module")
def reference(subset, subset_personas, encoder) -> dict:
    """The single machine's personas and the evidence vectors `p4r index build --reviews` makes of them."""
    records = read_personas(subset_personas)
    texts = {r.review_id: r.text for _, r, _ in LineReader().read(subset["reviews"], Review)}
    docs = build_documents(list(records.values()), encoder, persona_vector="evidence", review_texts=texts,
                           evidence_prior=3.0)
    return {"records": records, "vectors": {d.item_id: d.vectors for d in docs}}


def assert_same_as_single_machine(out, reference) -> None:
    got = shards(out)
    assert set(got) == set(reference["records"])
    for item_id, record in reference["records"].items():
        assert without_vectors(got[item_id]) == record.model_dump()
        stored = got[item_id].vectors
        assert (stored.model, stored.kind, stored.evidence_prior) == ("packaged:all-MiniLM-L6-v2", "evidence", 3.0)
        np.testing.assert_allclose(stored.array(), reference["vectors"][item_id], atol=1e-5)


def test_the_ray_run_equals_the_single_machine_run(subset, reference, tmp_path):
    out = tmp_path / "out"
    summary, _ = pipeline(subset["items"], subset["reviews"], out, "--num-cpus", "3", "--batch-size", "5")
    assert (summary["items"], summary["generated"], summary["skipped"], summary["failed"]) == (12, 12, 0, 0)
    assert summary["shards"] == 3 and summary["personas"] == sum(len(r.personas) for r in reference["records"].values())
    assert_same_as_single_machine(out, reference)
    assert json.loads((out / "report.json").read_text())["generated"] == 12

    again, _ = pipeline(subset["items"], subset["reviews"], out, "--num-cpus", "3")
    assert (again["generated"], again["skipped"], again["shards"]) == (0, 12, 0)


def test_parquet_and_gzip_inputs_a_folder_and_parquet_shards(subset, reference, tmp_path):
    items = [json.loads(line) for line in subset["items"].read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(items), tmp_path / "items.parquet")
    reviews = subset["reviews"].read_text().splitlines(keepends=True)
    folder = tmp_path / "reviews"
    folder.mkdir()
    half = len(reviews) // 2
    (folder / "part-0.jsonl").write_text("".join(reviews[:half]))
    with gzip.open(folder / "part-1.jsonl.gz", "wt") as fh:
        fh.write("".join(reviews[half:]))
    out = tmp_path / "out"
    summary, _ = pipeline(tmp_path / "items.parquet", folder, out, "--format", "parquet", "--num-cpus", "3")
    assert summary["generated"] == 12 and all(p.suffix == ".parquet" for p in out.glob("personas-*"))
    assert_same_as_single_machine(out, reference)


def test_a_killed_job_rerun_loses_nothing_and_redoes_nothing(subset, reference, tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "p4r_search", "pipeline", "run", "--items", subset["items"], "--reviews",
            subset["reviews"], "-o", out, "--batch-size", "2", "--num-cpus", "3", "--no-progress", "--json"]
    job = subprocess.Popen(list(map(str, args)), start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(out.glob("personas-*")) and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.1)
    os.killpg(job.pid, signal.SIGKILL)  # the driver and everything in its session, mid-run
    job.wait()
    finished = set(shards(out))
    assert 0 < len(finished) < 12, "the job was to be killed between its first and its last shard"

    summary, _ = pipeline(subset["items"], subset["reviews"], out, "--num-cpus", "3", "--batch-size", "2")
    assert summary["skipped"] == len(finished) and summary["generated"] == 12 - len(finished)
    assert shard_line_count(out) == 12  # each item once: none redone, none lost
    assert_same_as_single_machine(out, reference)


def test_a_bad_line_is_reported_as_the_single_machine_reports_it(subset, tmp_path):
    lines = subset["reviews"].read_text().splitlines(keepends=True)
    lines[2] = '{"review_id": "r-bad", "item_id": 12\n'
    bad = tmp_path / "reviews.jsonl"
    bad.write_text("".join(lines))
    single = p4r("personas", "generate", "--items", subset["items"], "--reviews", bad, "-o", tmp_path / "p.jsonl",
                 "--no-progress", "--json", expect=65)
    _, ray_run = pipeline(subset["items"], bad, tmp_path / "out", "--num-cpus", "3", expect=65)
    error = last_json(single.stderr)["error"]
    assert error["message"].startswith(f"{bad}:3: malformed JSON") and last_json(ray_run.stderr)["error"] == error
    assert not list((tmp_path / "out").glob("personas-*"))  # nothing generated before the check failed

    summary, _ = pipeline(subset["items"], bad, tmp_path / "out", "--num-cpus", "3", "--skip-invalid")
    rejected = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert summary["rejected_lines"] == 1 and summary["generated"] == 12
    assert (rejected[0]["file"], rejected[0]["line"]) == (str(bad), 3) and "malformed JSON" in rejected[0]["error"]


def test_cross_line_checks_say_what_the_single_machine_says(subset, tmp_path):
    items = subset["items"].read_text().splitlines(keepends=True)
    twice = tmp_path / "items.jsonl"
    twice.write_text("".join(items + [items[1]]))
    single = p4r("personas", "generate", "--items", twice, "--reviews", subset["reviews"], "-o", tmp_path / "p.jsonl",
                 "--no-progress", "--json", expect=65)
    _, ray_run = pipeline(twice, subset["reviews"], tmp_path / "out", "--num-cpus", "3", expect=65)
    error = last_json(single.stderr)["error"]
    assert "duplicate item_id" in error["message"] and f":{len(items) + 1}:" in error["message"]
    assert last_json(ray_run.stderr)["error"] == error


def last_json(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def test_the_same_command_runs_on_a_ray_cluster(subset, reference, tmp_path):
    """A Ray cluster started apart (`ray start --head`, as on a head node), joined with `--ray-address auto`, as
    a job on a cluster node does. (An explicit address needs the cluster's auth token as well: docs/scale.md.)"""
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    start = subprocess.run([ray, "start", "--head", f"--port={26379 + os.getpid() % 1000}", "--num-cpus=5",
                            "--include-dashboard=false", "--disable-usage-stats"],
                           capture_output=True, text=True, timeout=120, check=False)
    try:
        assert start.returncode == 0, start.stderr[-2000:]
        summary, _ = pipeline(subset["items"], subset["reviews"], tmp_path / "out", "--ray-address", "auto")
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120, check=False)
    assert summary["ray"] == {"address": "auto", "cpus": 5.0, "gpus": 0}  # the cluster's CPUs: not a Ray of its own
    assert summary["generated"] == 12
    assert_same_as_single_machine(tmp_path / "out", reference)


def test_without_ray_the_command_says_how_to_get_it(subset, tmp_path):
    # Ray is installed here; a `ray` package that fails to import stands in for a machine without it.
    fake = tmp_path / "fake" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    result = p4r("pipeline", "run", "--items", subset["items"], "--reviews", subset["reviews"], "-o", tmp_path / "o",
                 expect=64, env={"PYTHONPATH": str(tmp_path / "fake")})
    assert "pip install 'p4r-search[ray]'" in result.stderr


def test_llm_requests_keep_one_rate_limit_across_two_workers(llm_server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    from llm_helpers import small_examples

    paths = small_examples(tmp_path, n_items=2, max_reviews=2)
    summary, _ = pipeline(paths["items"], paths["reviews"], tmp_path / "out", *llm_args(llm_server, tmp_path),
                          "--rpm", "1", "--concurrency", "2", "--requests-per-actor", "1", "--batch-size", "1",
                          "--num-cpus", "3")
    generators = [w for w in summary["workers"] if w.startswith("generate ")]
    assert summary["generated"] == 2 and len(generators) == 2  # both workers asked for a request
    limit = summary["rate_limit"]
    assert limit["requests"] == 2 and limit["busiest_minute"] == 1  # never two in one minute, cluster-wide
    assert limit["waited_s"] > 10  # one of them was held back


def test_the_cost_cap_is_global_and_a_rerun_finishes(llm_server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    from llm_helpers import small_examples

    paths = small_examples(tmp_path, n_items=2, max_reviews=2)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": {"*": {"input": 1.0, "output": 1.0}}}))
    common = [*llm_args(llm_server, tmp_path), "--prices", prices, "--concurrency", "1", "--requests-per-actor", "1",
              "--batch-size", "1", "--num-cpus", "3"]
    summary, result = pipeline(paths["items"], paths["reviews"], tmp_path / "out", *common, "--max-cost", "0.000001",
                               expect=75)
    assert summary["generated"] == 1 and summary["stopped"] == 1 and summary["cost"]["cost_usd"] > 0.000001
    assert "cost cap" in result.stderr
    again, _ = pipeline(paths["items"], paths["reviews"], tmp_path / "out", *common)
    assert (again["skipped"], again["generated"]) == (1, 1) and len(shards(tmp_path / "out")) == 2


def llm_args(llm_server, tmp_path) -> list:
    return ["--generator", "llm", "--model", llm_server.model, "--base-url", llm_server.base_url,
            "--cache-dir", tmp_path / "cache", "--repeat-penalty", "1.2", "--max-output-tokens", "900",
            "--max-review-chars", "200", "--timeout", "600", "--max-attempts", "3",
            "--response-format", "json_object_schema"]





def test_documents_a_cluster_refuses_go_to_the_failed_docs_file_and_a_rerun_sends_them(subset, tmp_path):
    """The cluster here is tests/loopback_cluster.py, a stand-in that answers bulk items as scripted (a real
    cluster does not refuse one document on demand): one item refused for good (400), one throttled twice
    (429, then written by the retries of the single-machine bulk code)."""
    from loopback_cluster import LoopbackCluster

    ids = [json.loads(line)["item_id"] for line in subset["items"].read_text().splitlines()]
    cluster = LoopbackCluster("es", max_lifetime=900, rejected={ids[0]}, throttled={ids[1]: (429, 2)}).start()
    try:
        args = ["--engine", "es", "--url", cluster.url, "--index", "shop", "--failed-docs", tmp_path / "failed.jsonl",
                "--num-cpus", "3"]
        summary, result = pipeline(subset["items"], subset["reviews"], tmp_path / "out", *args, expect=75)
        refused = [json.loads(line) for line in (tmp_path / "failed.jsonl").read_text().splitlines()]
        assert (summary["written"], summary["bulk_failed"], summary["generated"]) == (11, 1, 11)
        assert [(r["item_id"], r["status"]) for r in refused] == [(ids[0], 400)]
        assert ids[0] not in shards(tmp_path / "out") and ids[1] in cluster.docs["shop"]
        assert "rerun the same command" in result.stderr

        cluster.rejected.clear()
        again, _ = pipeline(subset["items"], subset["reviews"], tmp_path / "out", *args)
    finally:
        cluster.stop()
    assert (again["skipped"], again["generated"], again["written"]) == (11, 1, 1)
    assert set(cluster.docs["shop"]) == set(ids) and not (tmp_path / "failed.jsonl").exists()


def test_the_readme_pipeline_commands_run_as_written(subset, tmp_path):
    """The README block marked `readme-pipeline`, in a scratch folder whose examples/ is the 12-item subset."""
    from conftest import ROOT

    (tmp_path / "examples").mkdir()
    for name in ("items", "reviews"):
        (tmp_path / "examples" / f"{name}.jsonl").write_text(subset[name].read_text())
    block = re.search(r"<!-- readme-pipeline -->\s*```\w*\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    commands = [shlex.split(line) for line in block.group(1).splitlines() if line.strip()]
    assert [c[:2] for c in commands] == [["p4r", "pipeline"], ["p4r", "index"]]
    for command in commands:
        extra = ["--num-cpus", "3", "--no-progress"] if command[1] == "pipeline" else []
        result = subprocess.run([sys.executable, "-m", "p4r_search", *command[1:], *extra], cwd=tmp_path,
                                capture_output=True, text=True, timeout=600, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
    assert "12 item(s) indexed" in result.stdout
