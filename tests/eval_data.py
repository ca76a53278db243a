"""Real review data for the evaluation tests, read in place from ../shared/data (research use only: never copied
into the repository). Tests that need it are skipped where it is absent, e.g. in a clone without it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AMAZON_BEAUTY = ROOT.parent / "shared" / "data" / "amazon-all-beauty" / "All_Beauty_5.json.gz"
needs_amazon = pytest.mark.skipif(not AMAZON_BEAUTY.is_file(), reason=f"needs {AMAZON_BEAUTY} (research-only data)")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def amazon_slice(folder: Path, every_nth_user: int) -> Path:
    """All_Beauty through the real `p4r data convert-amazon`, cut to every n-th user (by id) and their items."""
    from conftest import run_cli

    full = folder / "full"
    run_cli("data", "convert-amazon", AMAZON_BEAUTY, "-o", full)
    interactions = read_jsonl(full / "interactions.jsonl")
    users = sorted({i["user_id"] for i in interactions})[::every_nth_user]
    kept = set(users)
    interactions = [i for i in interactions if i["user_id"] in kept]
    items = {i["item_id"] for i in interactions}
    out = folder / "slice"
    out.mkdir()
    write_jsonl(out / "interactions.jsonl", interactions)
    write_jsonl(out / "reviews.jsonl", [r for r in read_jsonl(full / "reviews.jsonl") if r["user_id"] in kept])
    write_jsonl(out / "items.jsonl", [i for i in read_jsonl(full / "items.jsonl") if i["item_id"] in items])
    return out


DIGITAL_MUSIC = ROOT.parent / "shared" / "data" / "amazon-digital-music-prefix" / "reviews_Digital_Music_5.prefix.json.gz"
needs_digital_music = pytest.mark.skipif(not DIGITAL_MUSIC.is_file(),
                                         reason=f"needs {DIGITAL_MUSIC} (research-only data)")


def digital_music_slice(folder: Path, items: int) -> Path:
    """Digital Music through the real `p4r data convert-amazon`, cut to its first `items` items (by id), with
    their reviews and interactions: real users who reviewed several of them, in a few hundred reviews."""
    from conftest import run_cli

    full = folder / "full"
    run_cli("data", "convert-amazon", DIGITAL_MUSIC, "-o", full)
    kept = {i["item_id"] for i in sorted(read_jsonl(full / "items.jsonl"), key=lambda i: i["item_id"])[:items]}
    out = folder / "slice"
    out.mkdir()
    for name in ("items", "reviews", "interactions"):
        write_jsonl(out / f"{name}.jsonl", [r for r in read_jsonl(full / f"{name}.jsonl") if r["item_id"] in kept])
    return out
