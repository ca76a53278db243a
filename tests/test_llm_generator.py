"""The LLM generator's guarantees against faults, through the real `openai` client.

The endpoint is the FakeOpenAI loopback stand-in (tests/fake_openai.py): no real provider is reachable here,
and the real local model (tests/test_llm_local.py) cannot be told to fail on cue. Everything else is real:
the packaged embedding model, the prompts, the schema validation, the runner and its files.
"""

from __future__ import annotations

import json

import pytest
from fake_openai import content, dropped, malformed_json, rate_limited, server_error, slow
from llm_helpers import load, make_generator, persona_responder, personas_answer, small_examples

from p4r_search.personas import GenerationFailed
from p4r_search.personas.llm.client import EndpointError
from p4r_search.personas.llm.schema import NAME_PATTERN
from p4r_search.personas.runner import Shard, generate_personas, read_personas


@pytest.fixture
def examples(tmp_path):
    return small_examples(tmp_path)


@pytest.fixture
def fake(fake_openai):
    fake_openai.responder = persona_responder
    return fake_openai


def first(catalog):
    return next(iter(catalog))


def test_personas_are_schema_valid_and_cite_real_reviews(fake, encoder, examples, tmp_path):
    catalog = load(examples)
    generator = make_generator(fake, encoder, tmp_path)
    report = generate_personas(catalog, generator, tmp_path / "p.jsonl")
    records = read_personas(tmp_path / "p.jsonl")
    assert report.generated == 3 and set(records) == set(catalog.items)
    for item_id, record in records.items():
        review_ids = {r.review_id for r in catalog.reviews[item_id]}
        assert set(record.used_review_ids) == review_ids  # all fit in the budget
        for persona in record.personas:
            assert set(persona.evidence_review_ids) <= review_ids and persona.evidence_review_ids
            assert {s.review_id for s in persona.evidence_snippets} <= set(persona.evidence_review_ids)
        assert record.generator.prompt_version == "persona_synthesis/v1" and record.generator.model == "stand-in-model"
    body = fake.chat_requests()[0]
    schema = body["response_format"]["json_schema"]["schema"]
    item_schema = schema["properties"]["personas"]["items"]["properties"]
    assert item_schema["name"]["pattern"] == NAME_PATTERN
    assert item_schema["evidence_review_ids"]["items"]["enum"][0] == "R1"
    assert body["temperature"] == 0.0 and body["seed"] == 0


def test_rate_limits_and_server_errors_are_retried_and_counted(fake, encoder, examples, tmp_path):
    item, reviews = first(load(examples))
    fake.script(rate_limited(retry_after_s=0.01), server_error(500), server_error(503))
    generator = make_generator(fake, encoder, tmp_path, max_attempts=4)
    result = generator.generate(item, reviews)
    assert len(result.personas) == 2 and fake.count() == 4
    (line,) = generator.ledger.lines()
    assert (line.requests, line.failed_requests) == (1, 3)


def test_a_malformed_answer_gets_a_repair_turn(fake, encoder, examples, tmp_path):
    item, reviews = first(load(examples))
    fake.script(malformed_json())
    generator = make_generator(fake, encoder, tmp_path)
    assert len(generator.generate(item, reviews).personas) == 2
    retry = fake.chat_requests()[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": '{"personas": [{"name": "Cut off'}
    assert "not valid JSON" in retry[-1]["content"]
    assert generator.ledger.lines()[0].requests == 2  # the invalid answer was paid for too


def test_unknown_evidence_ids_are_repaired_or_retried_and_never_stored(fake, encoder, examples, tmp_path):
    catalog = load(examples)
    item, reviews = first(catalog)
    fake.script(content(personas_answer([], evidence=[["R99"], ["R98"]])),  # nothing valid: retried
                content(personas_answer([], evidence=[["R1", "R77"], ["R2"]])))  # R77 dropped, R1 kept
    generator = make_generator(fake, encoder, tmp_path)
    result = generator.generate(item, reviews)
    assert fake.count() == 2
    assert "not ids of reviews in the prompt" in fake.chat_requests()[1]["messages"][-1]["content"] or \
        "cites no review from the prompt" in fake.chat_requests()[1]["messages"][-1]["content"]
    ordered = sorted(r.review_id for r in reviews)
    assert result.personas[0].evidence_review_ids == [ordered[0]]
    assert result.notes == ["dropped evidence id 'R77': not a review in the prompt"]
    known = {r.review_id for r in reviews}
    assert all(set(p.evidence_review_ids) <= known for p in result.personas)


def test_slow_answers_time_out_and_are_retried(fake, encoder, examples, tmp_path):
    item, reviews = first(load(examples))
    fake.script(slow(3.0))
    generator = make_generator(fake, encoder, tmp_path, timeout_s=0.5)
    assert len(generator.generate(item, reviews).personas) == 2
    assert fake.count() == 2 and generator.ledger.lines()[0].failed_requests == 1


def test_dropped_connections_are_retried(fake, encoder, examples, tmp_path):
    item, reviews = first(load(examples))
    fake.script(dropped())
    generator = make_generator(fake, encoder, tmp_path)
    assert len(generator.generate(item, reviews).personas) == 2 and fake.count() == 2


def test_an_item_that_keeps_failing_is_recorded_and_the_run_goes_on(fake, encoder, examples, tmp_path):
    catalog = load(examples)
    bad_id, bad = next((i, item) for i, item in catalog.items.items())
    fake.script(*[malformed_json()] * 3, key=f"Title: {bad.title}")
    generator = make_generator(fake, encoder, tmp_path, max_attempts=3)
    report = generate_personas(catalog, generator, tmp_path / "p.jsonl")
    assert (report.generated, report.failed) == (2, 1)
    assert bad_id not in read_personas(tmp_path / "p.jsonl")
    (failure,) = [json.loads(line) for line in (tmp_path / "p.jsonl.failed.jsonl").read_text().splitlines()]
    assert failure["item_id"] == bad_id and failure["attempts"] == 3 and "not valid JSON" in failure["error"]
    again = generate_personas(catalog, make_generator(fake, encoder, tmp_path), tmp_path / "p.jsonl")
    assert (again.generated, again.skipped, again.failed) == (1, 2, 0)  # only the failed item is retried
    assert not (tmp_path / "p.jsonl.failed.jsonl").exists()


def test_a_wrong_key_or_model_stops_the_run_instead_of_failing_every_item(fake, encoder, examples, tmp_path):
    catalog = load(examples)
    fake.script(server_error(401))
    with pytest.raises(EndpointError, match="401"):
        generate_personas(catalog, make_generator(fake, encoder, tmp_path), tmp_path / "p.jsonl")
    assert fake.count() == 1


def test_cost_ledger_adds_up_the_served_usage(fake, encoder, examples, tmp_path):
    catalog = load(examples)
    fake.script(server_error(500))  # an unanswered request is counted but not paid for
    prices = {"stand-in-model": {"input": 2.0, "output": 10.0}}
    generator = make_generator(fake, encoder, tmp_path, prices=prices)
    generate_personas(catalog, generator, tmp_path / "p.jsonl")
    served = [r.body for r in fake.requests if r.path == "/v1/chat/completions"]
    from fake_openai import Reply, usage_for

    usages = [usage_for(body, Reply(persona_responder(body))) for body in served[1:]]
    (line,) = generator.ledger.lines()
    assert line.prompt_tokens == sum(u["prompt_tokens"] for u in usages)
    assert line.completion_tokens == sum(u["completion_tokens"] for u in usages)
    assert line.requests == 3 and line.failed_requests == 1
    expected = (line.prompt_tokens * 2.0 + line.completion_tokens * 10.0) / 1e6
    assert line.cost_usd == pytest.approx(expected)


def test_the_cache_makes_a_rerun_free(fake, encoder, examples, tmp_path):
    catalog = load(examples)
    generate_personas(catalog, make_generator(fake, encoder, tmp_path), tmp_path / "a.jsonl")
    assert fake.count() == 3
    generator = make_generator(fake, encoder, tmp_path)
    generate_personas(catalog, generator, tmp_path / "b.jsonl")  # new output file, same cache
    assert fake.count() == 3
    (line,) = generator.ledger.lines()
    assert (line.requests, line.cache_hits, line.cost_usd) == (0, 3, 0.0)
    a, b = read_personas(tmp_path / "a.jsonl"), read_personas(tmp_path / "b.jsonl")
    assert {k: v.personas for k, v in a.items()} == {k: v.personas for k, v in b.items()}
    make_generator(fake, encoder, tmp_path, temperature=0.7).generate(*first(catalog))
    assert fake.count() == 4  # a different sampling setting is a different key


def test_near_duplicate_personas_are_merged_with_a_note(fake, encoder, examples, tmp_path):
    item, reviews = first(load(examples))
    fake.responder = lambda request: personas_answer([], names=("Careful Shoppers", "Careful Shoppers"),
                                                     evidence=[["R1"], ["R2"]])
    result = make_generator(fake, encoder, tmp_path).generate(item, reviews)
    assert len(result.personas) == 1
    assert len(result.personas[0].evidence_review_ids) == 2
    assert result.notes[0].startswith("merged near-duplicate persona 'Careful Shoppers'")


def test_structured_output_falls_back_to_what_the_endpoint_accepts(fake, encoder, examples, tmp_path):
    catalog = load(examples)
    (item, reviews), (item2, reviews2) = list(catalog)[:2]
    fake.script(server_error(400), server_error(400))  # refuses json_schema, then json_object with a schema
    generator = make_generator(fake, encoder, tmp_path)
    assert len(generator.generate(item, reviews).personas) == 2
    assert len(generator.generate(item2, reviews2).personas) == 2
    formats = [body["response_format"] for body in fake.chat_requests()]
    assert formats[0]["type"] == "json_schema"
    assert formats[1]["type"] == "json_object" and formats[1]["schema"]["required"] == ["personas"]
    assert formats[2] == formats[3] == {"type": "json_object"}  # kept for the next item
    assert "must match this JSON schema" in fake.chat_requests()[3]["messages"][1]["content"]


def test_concurrency_is_bounded(fake, encoder, tmp_path):
    paths = small_examples(tmp_path, n_items=8, max_reviews=3)
    fake.script(*[slow(0.3, then=None)] * 8)
    generate_personas(load(paths), make_generator(fake, encoder, tmp_path), tmp_path / "p.jsonl", concurrency=3)
    assert 2 <= fake.peak_concurrency <= 3


def test_shards_split_the_catalog_without_overlap(fake, encoder, tmp_path):
    catalog = load(small_examples(tmp_path, n_items=8, max_reviews=2))
    seen = []
    for index in (1, 2, 3):
        out = tmp_path / f"shard{index}.jsonl"
        generate_personas(catalog, make_generator(fake, encoder, tmp_path), out, shard=Shard(index, 3))
        seen += list(read_personas(out))
    assert sorted(seen) == sorted(catalog.items)
    with pytest.raises(ValueError, match="I/N"):
        Shard.parse("4/3")


def test_single_review_items_get_exactly_one_persona(fake, encoder, tmp_path):
    catalog = load(small_examples(tmp_path, n_items=1, max_reviews=1))
    generator = make_generator(fake, encoder, tmp_path)
    result = generator.generate(*first(catalog))
    assert len(result.personas) == 1 and result.personas[0].support == 1.0
    schema = fake.chat_requests()[0]["response_format"]["json_schema"]["schema"]["properties"]["personas"]
    assert (schema["minItems"], schema["maxItems"]) == (1, 1)


def test_generation_failed_names_the_item(fake, encoder, examples, tmp_path):
    item, reviews = first(load(examples))
    fake.script(*[server_error(500)] * 2)
    with pytest.raises(GenerationFailed, match=item.item_id):
        make_generator(fake, encoder, tmp_path, max_attempts=2).generate(item, reviews)


def test_stage_one_extracts_aspects_per_review_and_synthesis_reads_them(fake, encoder, examples, tmp_path):
    item, reviews = first(load(examples))
    aspects = json.dumps({"purpose": "a gift for her sister", "context": "summer weddings",
                          "qualities": [{"quality": "soft fabric", "sentiment": "positive"}]})

    def responder(request):
        name = request["response_format"]["json_schema"]["name"]
        return aspects if name == "review_aspects" else persona_responder(request)

    fake.responder = responder
    generator = make_generator(fake, encoder, tmp_path, aspects=True)
    result = generator.generate(item, reviews)
    bodies = fake.chat_requests()
    assert len(bodies) == len(reviews) + 1 and len(result.personas) == 2
    synthesis = bodies[-1]["messages"][-1]["content"]
    assert synthesis.count("purpose: a gift for her sister; context: summer weddings; qualities: soft fabric (positive)") \
        == len(reviews)
    assert generator.info.prompt_version == "review_aspects/v1+persona_synthesis/v1"
    assert {line.stage: line.requests for line in generator.ledger.lines()} == {"aspects": len(reviews), "personas": 1}


def test_the_repeat_penalty_is_sent_in_every_structured_output_form(fake, encoder, examples, tmp_path):
    item, reviews = first(load(examples))
    fake.script(server_error(400), server_error(400))  # json_schema, then json_object+schema refused
    make_generator(fake, encoder, tmp_path, repeat_penalty=1.2).generate(item, reviews)
    bodies = fake.chat_requests()
    assert [b["response_format"]["type"] for b in bodies] == ["json_schema", "json_object", "json_object"]
    assert all(b["repeat_penalty"] == 1.2 for b in bodies)
