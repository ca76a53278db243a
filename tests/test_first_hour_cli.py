"""What a new user meets in the first hour, through the real `p4r` CLI: slices (--limit, --top-items,
--ignore-unknown-items), exit codes as the README lists them, JSON errors, Ctrl-C, dry-run assumptions, when the
encoder loads, and -v after the command. Real example data, the packaged model, real embedded indexes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import EXAMPLES, ROOT, read_jsonl, run_cli, write_jsonl

from p4r_search.cli import cli
from p4r_search.cli.app import INTERRUPTED

AMAZON = ROOT.parent / "shared" / "data" / "amazon-all-beauty" / "All_Beauty_5.json.gz"
NOTICE = "loading encoder all-MiniLM-L6-v2 ..."


def first_item(subset) -> str:
    return read_jsonl(subset["items"])[0]["item_id"]


def json_error(result) -> dict:
    return json.loads(result.stderr.strip().splitlines()[-1])["error"]


# -- 4. trying it on a slice ---------------------------------------------------------------------------------


def amazon_line(user: str, asin: str, day: int, text: str | None = "Works well.") -> dict:
    line = {"reviewerID": user, "asin": asin, "overall": 5.0, "unixReviewTime": 1472688000 + day * 86400}
    return {**line, "reviewText": text} if text else line


def test_convert_amazon_top_items_and_review_cap(tmp_path):
    lines = [amazon_line(f"u{n}", "A", n) for n in range(3)] + [amazon_line(f"u{n}", "B", n) for n in range(2)]
    lines += [amazon_line("u9", "C", 1), amazon_line("u8", "A", 9, text=None)]  # C: least reviewed; u8: no text
    source = write_jsonl(tmp_path / "reviews.json", lines)
    out = tmp_path / "out"
    report = json.loads(run_cli("data", "convert-amazon", source, "-o", out, "--top-items", "2",
                                "--max-reviews-per-item", "2", "--json").stdout)
    assert [i["item_id"] for i in read_jsonl(out / "items.jsonl")] == ["A", "B"]
    reviews = read_jsonl(out / "reviews.jsonl")
    assert [(r["item_id"], r["user_id"]) for r in reviews] == [("A", "u0"), ("A", "u1"), ("B", "u0"), ("B", "u1")]
    pairs = {(i["user_id"], i["item_id"]) for i in read_jsonl(out / "interactions.jsonl")}
    assert pairs == {("u0", "A"), ("u1", "A"), ("u8", "A"), ("u0", "B"), ("u1", "B")}  # u2's A went with its review
    assert (report["items_not_selected"], report["reviews_over_cap"], report["reviews"]) == (1, 1, 4)
    assert report["interactions_dropped"] == 2  # u2 on A (capped), u9 on C (not selected)


@pytest.mark.skipif(not AMAZON.exists(), reason=f"shared data not present: {AMAZON}")
def test_convert_amazon_slice_of_the_real_file(tmp_path):
    result = run_cli("data", "convert-amazon", AMAZON, "-o", tmp_path, "--top-items", "5",
                     "--max-reviews-per-item", "10")
    assert "items not selected: 80" in result.output
    items = read_jsonl(tmp_path / "items.jsonl")
    reviews = read_jsonl(tmp_path / "reviews.jsonl")
    assert len(items) == 5 and len(reviews) == 50
    assert {i["item_id"] for i in read_jsonl(tmp_path / "interactions.jsonl")} == {i["item_id"] for i in items}


def test_unknown_item_error_says_what_to_do_and_the_flag_does_it(subset, subset_personas, tmp_path):
    """A subset of the items with the full reviews file: the error names the remedies; --ignore-unknown-items
    is one (this reruns on the subset's own personas, so nothing is generated); --skip-invalid writes the
    reason, without the hint, to the rejects file."""
    out = shutil.copy(subset_personas, tmp_path / "personas.jsonl")
    args = ["personas", "generate", "--items", subset["items"], "--reviews", EXAMPLES / "reviews.jsonl", "-o", out,
            "--no-progress"]
    refused = run_cli(*args, expect=65)
    assert "review of unknown item" in refused.stderr
    assert "--ignore-unknown-items" in refused.stderr and "--limit N" in refused.stderr
    ignored = run_cli(*args, "--ignore-unknown-items")
    total = len(read_jsonl(EXAMPLES / "reviews.jsonl")) - len(read_jsonl(subset["reviews"]))
    assert f"note: {total} review(s) of items not in" in ignored.stderr
    assert f"0 item(s) generated (0 personas), {len(read_jsonl(subset['items']))} already done" in ignored.stdout
    run_cli(*args, "--skip-invalid")
    rejected = read_jsonl(tmp_path / "personas.jsonl.rejects.jsonl")
    assert len(rejected) == total and "unknown item" in rejected[0]["error"] and "--limit" not in rejected[0]["error"]


LIMIT = 20  # items of the interrupted slice


def test_ctrl_c_keeps_finished_items_and_a_rerun_of_the_slice_resumes(tmp_path):
    """A real SIGINT to a real `p4r personas generate --limit 20` in a subprocess, sent once the first item is
    in the output: a KeyboardInterrupt raised by hand would not show what the user sees (the signal arriving
    while the generator works in a thread pool). Then the same command, in-process, finishes only the rest.
    """
    out = tmp_path / "personas.jsonl"
    args = ["personas", "generate", "--items", EXAMPLES / "items.jsonl", "--reviews", EXAMPLES / "reviews.jsonl",
            "-o", out, "--limit", str(LIMIT), "--no-progress"]
    # a shell runs background jobs with SIGINT ignored, and the child would inherit that: give it the default,
    # as a terminal's foreground command has it (`bash .ci/run &` made this test fail)
    child = subprocess.Popen([sys.executable, "-m", "p4r_search", *map(str, args)], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    deadline = time.monotonic() + 300
    while not (out.exists() and out.read_text().count("\n") >= 1) and time.monotonic() < deadline:
        assert child.poll() is None, child.communicate()
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stderr
    assert "interrupted: every finished item is saved in the output; rerun the same command to resume" in stderr
    assert "Aborted!" not in stderr
    done = len(read_jsonl(out))
    assert 1 <= done < LIMIT
    rerun = run_cli(*args)
    assert f"{LIMIT - done} item(s) generated" in rerun.stdout and f"{done} already done" in rerun.stdout
    assert f"(a slice: the first {LIMIT} of 150 items, --limit {LIMIT})" in rerun.stdout
    first = [i["item_id"] for i in read_jsonl(EXAMPLES / "items.jsonl")[:LIMIT]]
    assert sorted(r["item_id"] for r in read_jsonl(out)) == sorted(first)
    report = json.loads((tmp_path / "personas.jsonl.report.json").read_text())
    assert report["slice"] == {"limit": LIMIT, "items_in_file": 150} and report["items"] == LIMIT


def test_every_interrupt_note_names_a_real_command():
    for key in INTERRUPTED:
        command = cli
        for name in key.split():
            command = command.commands[name]
        assert command.callback is not None, key


# -- 6. exit codes as the README lists them ----------------------------------------------------------------


def test_a_missing_index_is_not_found_and_says_how_to_build_one(tmp_path):
    missing = tmp_path / "does-not-exist"
    result = run_cli("recommend", "--index", missing, "--history", "1", expect=66)
    assert f"error: {missing}: no such index directory; build one with: p4r index build" in result.stderr
    run_cli("index", "delete", "--index", missing, "1", expect=66)
    run_cli("index", "repair", "--index", missing, expect=66)
    assert not missing.exists()  # neither created it
    (tmp_path / "folder").mkdir()
    assert "not an index" in run_cli("index", "info", "--index", tmp_path / "folder", expect=66).stderr
    (tmp_path / "damaged" / "store").mkdir(parents=True)
    run_cli("index", "info", "--index", tmp_path / "damaged", expect=74)


def test_a_bad_option_value_is_64_a_bad_command_line_2(subset_index):
    bad = run_cli("recommend", "--index", subset_index, "--history", "1", "--mode", "foo", expect=64)
    assert "Invalid value for '--mode'" in bad.stderr
    run_cli("recommend", "--index", subset_index, "--history", "1", "-k", "many", expect=64)
    run_cli("recommend", "--index", subset_index, "--no-such-option", expect=2)
    run_cli("recommend", "--history", "1", expect=2)  # --index missing
    run_cli("no-such-command", expect=2)


def test_with_json_errors_are_one_json_object_on_stderr(subset_index, tmp_path):
    missing = run_cli("recommend", "--index", tmp_path / "none", "--history", "1", "--json", expect=66)
    error = json_error(missing)
    assert error["exit_code"] == 66 and error["type"] == "NotFoundError" and "p4r index build" in error["message"]
    assert missing.stdout == ""
    bad = json_error(run_cli("recommend", "--index", subset_index, "--mode", "foo", "--json", expect=64))
    assert bad["exit_code"] == 64 and bad["type"] == "BadParameter" and "'foo'" in bad["message"]
    plain = run_cli("recommend", "--index", tmp_path / "none", "--history", "1", expect=66)
    assert plain.stderr.startswith("error: ")


# -- 8. what a dry run assumes ---------------------------------------------------------------------------


def test_dry_run_says_what_it_assumes(tmp_path):
    help_text = run_cli("index", "build", "--help").stdout
    assert "es 8.17.0, opensearch 2.19.0" in " ".join(help_text.split())
    assumed = run_cli("index", "create", "--engine", "opensearch", "--index", "x", "--dry-run")
    assert "dry run: assuming opensearch 2.19.0; pass --assume-version to change" in assumed.stderr
    assert json.loads(assumed.stdout.splitlines()[0])["path"] == "/x"
    given = run_cli("index", "create", "--engine", "opensearch", "--index", "x", "--dry-run", "--assume-version", "2.17.0")
    assert "dry run: assuming" not in given.stderr


# -- 9. the encoder loads only to embed, and says so ------------------------------------------------------

PROBE = """
import json, sys
from p4r_search.cli import cli
loaded = {}
for name, args in json.loads(sys.argv[1]).items():
    try:
        cli.main(args, standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, (name, exc.code)
    loaded[name] = "torch" in sys.modules
print(json.dumps(loaded))
"""


def test_torch_loads_only_for_commands_that_embed(subset, subset_personas, subset_index, tmp_path):
    """One fresh interpreter runs the commands in turn and records whether torch has been imported after each;
    the last one embeds a text, so it shows that the probe does see torch."""
    item = first_item(subset)
    personas = shutil.copy(subset_personas, tmp_path / "personas.jsonl")
    index = ["--index", str(shutil.copytree(subset_index, tmp_path / "index"))]  # `index delete` writes
    runs = {
        "index info": ["index", "info", *index],
        "index delete": ["index", "delete", *index, "no-such-item"],
        "recommend --history": ["recommend", *index, "--history", item, "--profile-source", "items", "-k", "2"],
        "explain --history": ["explain", *index, "--history", item, "--item", item],
        "personas generate, all done": ["personas", "generate", "--items", str(subset["items"]), "--reviews",
                                        str(subset["reviews"]), "-o", str(personas), "--no-progress"],
        "recommend --text": ["recommend", *index, "--text", "a summer dress", "-k", "2"],
    }
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(runs)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == {name: name == "recommend --text" for name in runs}
    assert done.stderr.count(NOTICE) == 1


def test_the_encoder_notice_is_not_in_json_runs(subset_index):
    human = run_cli("recommend", "--index", subset_index, "--text", "a summer dress", "-k", "1")
    assert human.stderr.startswith(NOTICE)
    quiet = run_cli("recommend", "--index", subset_index, "--text", "a summer dress", "-k", "1", "--json")
    assert quiet.stderr == "" and json.loads(quiet.stdout)["hits"]


# -- 3. -v after the command ------------------------------------------------------------------------------


def test_verbose_works_after_the_command_too(subset_index):
    root = logging.getLogger()
    try:
        root.setLevel(logging.WARNING)
        run_cli("index", "info", "--index", subset_index)
        assert root.level == logging.WARNING
        run_cli("index", "info", "--index", subset_index, "-v")
        assert root.level == logging.INFO and logging.getLogger("urllib3").level == logging.NOTSET
        root.setLevel(logging.WARNING)
        run_cli("-v", "index", "info", "--index", subset_index)
        assert root.level == logging.INFO
        assert "-v, --verbose" in run_cli("recommend", "--help").stdout
    finally:
        root.setLevel(logging.WARNING)
        logging.getLogger("urllib3").setLevel(logging.ERROR)
