"""Resumable persona generation with the real extractive generator and the real model."""

from __future__ import annotations

import json

import pytest

from p4r_search.catalog import load_catalog
from p4r_search.io import LineReader
from p4r_search.personas import make_generator
from p4r_search.personas.runner import generate_personas, read_personas


class Counting:
    """Wraps the real generator and records which items it was asked to generate."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[str] = []

    @property
    def info(self):
        return self.inner.info

    def generate(self, item, reviews):
        self.calls.append(item.item_id)
        return self.inner.generate(item, reviews)


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def tiny(tmp_path):
    items = [{"item_id": f"i{n}", "title": f"Item {n}"} for n in range(3)]
    reviews = [
        {"review_id": f"r{n}{m}", "item_id": f"i{n}", "rating": 5 - m, "text": text}
        for n in range(3)
        for m, text in enumerate(["Soft and warm sweater.", "Runs small in the shoulders.", "Lovely colour, true to size."])
    ]
    return write(tmp_path / "items.jsonl", items), write(tmp_path / "reviews.jsonl", reviews)


def catalog(paths):
    return load_catalog(*paths, LineReader())


def test_rerun_skips_finished_items_and_redoes_changed_ones(tmp_path, tiny, encoder):
    out = tmp_path / "personas.jsonl"
    gen = Counting(make_generator("extractive", encoder))
    first = generate_personas(catalog(tiny), gen, out)
    assert first.generated == 3 and gen.calls == ["i0", "i1", "i2"]
    assert generate_personas(catalog(tiny), gen, out).skipped == 3 and len(gen.calls) == 3

    reviews = tiny[1].read_text().splitlines()
    reviews[0] = json.dumps({"review_id": "r00", "item_id": "i0", "rating": 1, "text": "Pilled after one wash."})
    tiny[1].write_text("\n".join(reviews) + "\n")
    again = generate_personas(catalog(tiny), gen, out)
    assert (again.generated, again.skipped) == (1, 2) and gen.calls[-1] == "i0"
    lines = out.read_text().splitlines()
    assert len(lines) == 3  # the superseded line of i0 was compacted away
    assert "Pilled after one wash" in read_personas(out)["i0"].model_dump_json()


def test_a_torn_last_line_is_dropped_and_that_item_redone(tmp_path, tiny, encoder):
    out = tmp_path / "personas.jsonl"
    gen = Counting(make_generator("extractive", encoder))
    generate_personas(catalog(tiny), gen, out)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 40])  # a crash in the middle of writing the last item
    with pytest.warns(UserWarning, match="incomplete last line"):
        report = generate_personas(catalog(tiny), gen, out)
    assert (report.generated, report.skipped) == (1, 2) and gen.calls[-1] == "i2"
    assert sorted(read_personas(out)) == ["i0", "i1", "i2"]


def test_output_records_generator_metadata_and_hash(tmp_path, tiny, encoder):
    out = tmp_path / "personas.jsonl"
    generate_personas(catalog(tiny), make_generator("extractive", encoder, seed=3), out)
    record = read_personas(out)["i1"]
    assert record.generator.name == "extractive" and record.generator.params["seed"] == 3
    assert record.generator.model == encoder.model_name
    assert record.input_hash.startswith("sha256:") and sorted(record.used_review_ids) == ["r10", "r11", "r12"]
