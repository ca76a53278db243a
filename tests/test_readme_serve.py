"""The README's `curl` calls to `p4r serve` (the block marked `<!-- readme-serve -->`), sent as written to a
real service over a real index of the example slice (the same ids as examples/)."""

from __future__ import annotations

import json
import re
import shlex

import pytest
from conftest import ROOT


def readme_calls() -> list[tuple[str, str, dict | None]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- readme-serve -->\s*```\w*\n(.*?)```", text, re.DOTALL)
    assert block, "README has no block marked readme-serve"
    calls = []
    for line in block.group(1).splitlines():
        words = shlex.split(line)
        assert words[:2] == ["curl", "-s"], line
        url = next(w for w in words if w.startswith("localhost:8000/"))
        body = json.loads(words[words.index("-d") + 1]) if "-d" in words else None
        calls.append(("POST" if body is not None else "GET", url.removeprefix("localhost:8000"), body))
    return calls


@pytest.mark.parametrize(("method", "path", "body"), readme_calls())
def test_each_readme_call_is_answered(http, method, path, body):
    answer = http.request(method, path, json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    if path == "/v1/recommend":
        assert data["hits"] and data["skipped"] == {"history": [], "candidates": []}
        assert all(h["persona"] and h["evidence"] for h in data["hits"])
    if body and "candidates" in body:
        assert {h["item_id"] for h in data["hits"]} == set(body["candidates"])
    if path == "/v1/explain":
        assert data["persona_scores"] and data["contributions"]
