"""The README's Python blocks (those marked `<!-- readme-test: NAME -->`) run as written, in a scratch folder
holding the files they name: a slice of examples/ (the same real reviews), and a slice of the Digital Music
data with `p4r eval loo` run on it, as the README says to."""

from __future__ import annotations

import os
import re
import sys

import pytest
from conftest import EXAMPLES, ROOT, read_jsonl, run_cli, write_jsonl
from eval_data import digital_music_slice, needs_digital_music

README_ITEMS = ("1078", "1094", "1080", "1081", "862", "1110")  # the ids the examples block names


def readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- readme-test: {name} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README has no block marked readme-test: {name}"
    return match.group(1)


def run_block(name: str, folder, capsys, namespace: dict | None = None) -> str:
    """Runs the block in `folder`; `namespace` carries names from an earlier block, as in one session."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        exec(compile(readme_block(name), f"README.md:{name}", "exec"),  # noqa: S102 - the README, as written
             namespace if namespace is not None else {"__name__": "__readme__"})
    finally:
        os.chdir(cwd)
    return capsys.readouterr().out


def test_the_public_names_load_lazily():
    import subprocess

    code = ("import sys, p4r_search; assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules;"
            "[getattr(p4r_search, n) for n in p4r_search.__all__]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_examples_block(tmp_path, capsys):
    folder = tmp_path / "examples"
    folder.mkdir()
    items = [i for i in read_jsonl(EXAMPLES / "items.jsonl") if i["item_id"] in README_ITEMS]
    reviews = [r for r in read_jsonl(EXAMPLES / "reviews.jsonl") if r["item_id"] in README_ITEMS]
    kept = [r for n, r in enumerate(reviews) if sum(x["item_id"] == r["item_id"] for x in reviews[:n]) < 12]
    write_jsonl(folder / "items.jsonl", items)
    write_jsonl(folder / "reviews.jsonl", kept)
    out = run_block("examples", tmp_path, capsys)
    lines = out.strip().splitlines()
    reranked = [line for line in lines if "candidate_rank" in line]
    assert len(reranked) == 3 and len(lines) == 3 + len(README_ITEMS) - 2  # 2 of them are the history
    assert (tmp_path / "idx").is_dir() and (tmp_path / "personas.jsonl").is_file()


@needs_digital_music
def test_the_training_block(tmp_path, capsys):
    slice_folder = digital_music_slice(tmp_path / "data", items=40)
    os.rename(slice_folder, tmp_path / "music")
    run_cli("eval", "loo", "--data", tmp_path / "music", "--out", tmp_path / "music-eval", "--no-train",
            "--no-progress")
    out = run_block("training", tmp_path, capsys)
    assert "examples; loss" in out and (tmp_path / "music-encoder" / "modules.json").is_file()
    assert len(eval(out.strip().splitlines()[-1])) == 3


