"""End to end with a real LLM: SmolLM2-135M served by llama-cpp-python on loopback (the `llm_server` fixture),
called through the `openai` client by `p4r personas generate --generator llm`.

The model is tiny (135M parameters), so these tests check the pipeline's guarantees (schema-valid personas,
evidence ids that exist, the structured-output fallback, the cache), never the quality of the prose.
Prompts are kept short: this CPU reads about 40 prompt tokens a second under load.
"""

from __future__ import annotations

import json

from conftest import run_cli
from llm_helpers import small_examples

from p4r_search.catalog import load_catalog
from p4r_search.io import LineReader
from p4r_search.personas.llm.schema import TEXT_MAX
from p4r_search.personas.runner import read_personas


def test_three_items_end_to_end_with_a_real_model(llm_server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a local server needs none
    paths = small_examples(tmp_path, n_items=3, max_reviews=2)
    out = tmp_path / "personas.jsonl"
    args = ["personas", "generate", "--items", paths["items"], "--reviews", paths["reviews"], "-o", out,
            "--generator", "llm", "--model", llm_server.model, "--base-url", llm_server.base_url,
            "--cache-dir", tmp_path / "cache", "--repeat-penalty", "1.2", "--max-output-tokens", "900",
            "--max-review-chars", "200", "--timeout", "600", "--max-attempts", "3", "--no-progress", "--json"]
    summary = json.loads(run_cli(*args).stdout)

    catalog = load_catalog(paths["items"], paths["reviews"], LineReader())
    records = read_personas(out)
    assert summary["generated"] == 3 and set(records) == set(catalog.items)
    for item_id, record in records.items():
        review_ids = {r.review_id for r in catalog.reviews[item_id]}
        assert 1 <= len(record.personas) <= 7
        for persona in record.personas:  # the stored model validated already; these are the schema's bounds
            assert len(persona.name.split()) in (2, 3) and persona.name == " ".join(persona.name.split())
            assert len(persona.description) <= TEXT_MAX and len(persona.rationale) <= TEXT_MAX
            assert persona.evidence_review_ids and set(persona.evidence_review_ids) <= review_ids
            assert set(persona.evidence_review_ids) <= set(record.used_review_ids)
        assert record.generator.model == llm_server.model
        assert record.generator.prompt_version == "persona_synthesis/v1"
    cost = summary["cost"]
    assert cost["prompt_tokens"] > 0 and cost["completion_tokens"] > 0 and cost["cost_usd"] is None  # unpriced

    again = json.loads(run_cli(*args[:-2], "-o", tmp_path / "again.jsonl", "--no-progress", "--json").stdout)
    assert again["generated"] == 3 and again["cost"]["requests"] == 0 and again["cost"]["cache_hits"] == 3
