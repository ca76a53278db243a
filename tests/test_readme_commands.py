"""The README's command blocks (marked `<!-- readme-commands: NAME -->`) run as written, in order, through the
real `p4r` command (in-process), in a scratch folder holding the files they name: a slice of examples/ with
every item the commands name (the same real reviews, 12 per item), and the shared data the last commands
read (linked from ../shared/data, never copied). A command that fails fails the test with its output."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT, read_jsonl, write_jsonl

SHARED = ROOT.parent / "shared" / "data"
NAMED_DATA = {"All_Beauty_5.json.gz": SHARED / "amazon-all-beauty" / "All_Beauty_5.json.gz",
              "reviews.parquet": SHARED / "womens-clothing-reviews" / "reviews.parquet"}
REVIEWS_PER_ITEM = 12


def readme_commands(name: str) -> list[list[str]]:
    """The block's commands, continuation lines joined, comments dropped, split as a shell would."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- readme-commands: {name} -->\s*```\w*\n(.*?)```", text, re.S)
    assert match, f"README has no block marked readme-commands: {name}"
    joined = match.group(1).replace("\\\n", " ")
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def stage_examples(folder: Path, commands: list[list[str]]) -> None:
    """examples/ with the items the commands name (ids, the demo users' histories, filtered categories)."""
    words = {word for command in commands for arg in command for word in re.split(r"[,= ]", arg)}
    interactions = read_jsonl(EXAMPLES / "interactions.jsonl")
    users = {i["user_id"] for i in interactions if i["user_id"] in words}
    wanted = words | {i["item_id"] for i in interactions if i["user_id"] in users}
    catalog = read_jsonl(EXAMPLES / "items.jsonl")
    named = [i for i in catalog if i["item_id"] in wanted]
    by_category = [i for i in catalog if set(i["categories"]) & words and i not in named]
    items = named + by_category[:6]  # a few of each filtered category is enough
    ids = {i["item_id"] for i in items}
    reviews, count = [], {}
    for review in read_jsonl(EXAMPLES / "reviews.jsonl"):
        if review["item_id"] in ids and count.get(review["item_id"], 0) < REVIEWS_PER_ITEM:
            count[review["item_id"]] = count.get(review["item_id"], 0) + 1
            reviews.append(review)
    (folder / "examples").mkdir()
    write_jsonl(folder / "examples" / "items.jsonl", items)
    write_jsonl(folder / "examples" / "reviews.jsonl", reviews)
    write_jsonl(folder / "examples" / "interactions.jsonl", [i for i in interactions if i["item_id"] in ids])


def run_block(name: str, folder: Path, prepare=lambda command: command,
              allowed: Callable[[list[str]], tuple[int, ...]] = lambda command: (0,)) -> dict[str, str]:
    """Runs every command of the block in `folder`; returns each command line's output. `allowed` gives the
    exit codes a command may end with (0 unless the caller says why)."""
    outputs = {}
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for command in readme_commands(name):
            if command[0] == "export":
                continue  # variables for a cluster's credentials; the caller sets what its cluster needs
            assert command[0] == "p4r", f"README block {name}: not a p4r command: {command}"
            outputs[shlex.join(command)] = run_allowed(prepare(command)[1:], allowed(command))
    finally:
        os.chdir(cwd)
    return outputs


def run_allowed(args: list[str], codes: tuple[int, ...]) -> str:
    from click.testing import CliRunner

    from p4r_search.cli import cli

    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code in codes, f"p4r {shlex.join(args)}: exit {result.exit_code}: {result.output}"
    return result.output


@pytest.mark.skipif(not all(p.is_file() for p in NAMED_DATA.values()),
                    reason=f"the shared data the README's last commands read is not in {SHARED}")
def test_the_cli_tour_runs_as_written(tmp_path):
    commands = readme_commands("tour")
    stage_examples(tmp_path, commands)
    for name, source in NAMED_DATA.items():
        (tmp_path / name).symlink_to(source)
    outputs = run_block("tour", tmp_path)
    first = next(out for line, out in outputs.items() if line.startswith("p4r recommend --index idx --user"))
    assert "5 recommendation(s) for demo-petite-dresses" in first
    hits = json.loads(next(out for line, out in outputs.items() if "--json" in line))["hits"]
    assert hits and all(h["persona"] for h in hits)
    rescore = next(out for line, out in outputs.items() if "--mode rescore" in line)
    assert "bm25" in rescore and "fused" in rescore
    assert (tmp_path / "beauty-encoder" / "modules.json").is_file()
    assert (tmp_path / "clothing-eval").is_dir() and (tmp_path / "idx-text").is_dir()
