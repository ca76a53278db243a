"""Tests of the FakeOpenAI STAND-IN itself (tests/fake_openai.py), through the real `openai` client.

The stand-in exists because no real provider is reachable here; these tests make sure its faults reach the
client as the exceptions a real provider's would, and that its Files and Batches round trip parses into the
client's own types.
"""

from __future__ import annotations

import json
import threading

import openai
import pytest
from fake_openai import (
    FakeOpenAI,
    Reply,
    content,
    dropped,
    estimate_tokens,
    expired,
    malformed_json,
    rate_limited,
    server_error,
    slow,
)

MESSAGES = [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Reviews of item-1."}]


def ask(client, text: str = "Reviews of item-1.", **kwargs):
    messages = [{"role": "user", "content": text}]
    return client.chat.completions.create(model="fake-model", messages=messages, **kwargs)


def test_default_answer_is_a_chat_completion_with_deterministic_usage(fake_openai):
    fake_openai.responder = lambda request: json.dumps({"personas": [], "n": len(request["messages"])})
    client = fake_openai.client(max_retries=0)
    response = client.chat.completions.create(
        model="my-model", messages=MESSAGES, response_format={"type": "json_object"}, temperature=0
    )
    body = response.choices[0].message.content
    assert json.loads(body) == {"personas": [], "n": 2}
    assert response.model == "my-model" and response.choices[0].finish_reason == "stop"
    prompt = "Answer in JSON.\nReviews of item-1."
    assert response.usage.prompt_tokens == estimate_tokens(prompt) == 9
    assert response.usage.completion_tokens == estimate_tokens(body)
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    (recorded,) = fake_openai.requests
    assert recorded.method == "POST" and recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == "Bearer test-key"
    assert recorded.body["response_format"] == {"type": "json_object"} and recorded.body["temperature"] == 0
    assert fake_openai.chat_requests() == [recorded.body]


def test_responder_can_set_token_counts(fake_openai):
    fake_openai.responder = lambda request: Reply("{}", prompt_tokens=120, completion_tokens=30)
    usage = ask(fake_openai.client(max_retries=0)).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (120, 30, 150)


def test_rate_limit_is_a_rate_limit_error_with_retry_after(fake_openai):
    fake_openai.script(rate_limited(retry_after_s=0.05))
    with pytest.raises(openai.RateLimitError) as caught:
        ask(fake_openai.client(max_retries=0))
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "0.05"
    assert caught.value.body["code"] == "rate_limit_exceeded"
    assert json.loads(ask(fake_openai.client(max_retries=0)).choices[0].message.content)  # the script is used up


def test_the_client_retries_scripted_faults_and_then_succeeds(fake_openai):
    fake_openai.script(rate_limited(retry_after_s=0.01), server_error(503))
    response = ask(fake_openai.client(max_retries=2))
    assert json.loads(response.choices[0].message.content) == {"echo": "Reviews of item-1."}
    assert fake_openai.count("/v1/chat/completions") == 3
    assert fake_openai.faults.pending() == 0


def test_server_error_is_an_api_status_error(fake_openai):
    fake_openai.script(server_error())
    with pytest.raises(openai.InternalServerError) as caught:
        ask(fake_openai.client(max_retries=0))
    assert isinstance(caught.value, openai.APIStatusError) and caught.value.status_code == 500


def test_malformed_json_and_given_content_arrive_as_200s(fake_openai):
    unknown_evidence = json.dumps({"personas": [{"name": "Petite Buyer", "evidence_review_ids": ["r-999"]}]})
    fake_openai.script(malformed_json(), content(unknown_evidence))
    client = fake_openai.client(max_retries=0)
    with pytest.raises(json.JSONDecodeError):
        json.loads(ask(client).choices[0].message.content)
    assert ask(client).choices[0].message.content == unknown_evidence


def test_slow_answer_times_the_client_out(fake_openai):
    fake_openai.script(slow(5.0))
    with pytest.raises(openai.APITimeoutError):
        ask(fake_openai.client(max_retries=0, timeout=0.3))
    fake_openai.script(slow(0.05))
    assert ask(fake_openai.client(max_retries=0, timeout=5)).choices[0].message.content


def test_dropped_connection_is_a_connection_error(fake_openai):
    fake_openai.script(dropped())
    with pytest.raises(openai.APIConnectionError) as caught:
        ask(fake_openai.client(max_retries=0))
    assert not isinstance(caught.value, openai.APITimeoutError)


def test_keyed_faults_hit_only_matching_prompts(fake_openai):
    fake_openai.script(server_error(), server_error(), key="item-2")
    client = fake_openai.client(max_retries=0)
    assert ask(client, "Reviews of item-1.").choices[0].message.content
    with pytest.raises(openai.InternalServerError):
        ask(client, "Reviews of item-2.")
    assert ask(client, "Reviews of item-3.").choices[0].message.content
    with pytest.raises(openai.InternalServerError):
        ask(client, "Reviews of item-2.")
    assert ask(client, "Reviews of item-2.").choices[0].message.content
    assert fake_openai.count() == 5


def test_wrong_api_key_is_an_authentication_error():
    with FakeOpenAI(api_key="sk-right") as fake:
        assert ask(fake.client(max_retries=0)).choices[0].message.content
        wrong = openai.OpenAI(base_url=fake.base_url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            ask(wrong)


def test_peak_concurrency_counts_requests_in_flight(fake_openai):
    fake_openai.script(slow(0.3), slow(0.3), slow(0.3))
    client = fake_openai.client(max_retries=0)
    threads = [threading.Thread(target=ask, args=(client,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake_openai.peak_concurrency == 3 and fake_openai.count() == 3


def test_models_lists_the_served_model(fake_openai):
    assert [m.id for m in fake_openai.client(max_retries=0).models.list()] == ["fake-model"]


def batch_input(*custom_ids: str) -> bytes:
    lines = [
        {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "fake-model", "messages": [{"role": "user", "content": f"Reviews of {cid}."}]}}
        for cid in custom_ids
    ]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def test_files_and_batches_round_trip(fake_openai):
    fake_openai.script(server_error(), key="item-2")
    client = fake_openai.client(max_retries=0)
    upload = client.files.create(file=("input.jsonl", batch_input("item-1", "item-2", "item-3")), purpose="batch")
    assert (upload.purpose, upload.filename, upload.status) == ("batch", "input.jsonl", "processed")
    assert client.files.retrieve(upload.id).bytes == upload.bytes == len(batch_input("item-1", "item-2", "item-3"))
    assert client.files.content(upload.id).content == batch_input("item-1", "item-2", "item-3")

    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"run": "r1"})
    assert batch.status == "validating" and batch.metadata == {"run": "r1"}
    assert client.batches.retrieve(batch.id).status == "in_progress"
    assert fake_openai.count() == 0  # nothing has run yet
    done = client.batches.retrieve(batch.id)  # batch_polls=2: the second retrieve completes it
    assert done.status == "completed" and done.completed_at is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (3, 2, 1)

    outputs = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
    assert [o["custom_id"] for o in outputs] == ["item-1", "item-3"]
    assert all(o["error"] is None and o["response"]["status_code"] == 200 for o in outputs)
    completion = openai.types.chat.ChatCompletion.model_validate(outputs[0]["response"]["body"])
    assert json.loads(completion.choices[0].message.content) == {"echo": "Reviews of item-1."}
    assert completion.usage.total_tokens > 0

    (error_line,) = [json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()]
    assert error_line["custom_id"] == "item-2" and error_line["response"]["status_code"] == 500
    assert client.files.retrieve(done.error_file_id).purpose == "batch_error"
    assert [b.id for b in client.batches.list()] == [batch.id]


def test_batches_complete_on_demand_cancel_and_expire():
    with FakeOpenAI(batch_polls=None) as fake:
        fake.script(expired(), key="item-9")
        client = fake.client(max_retries=0)
        file_id = client.files.create(file=("in.jsonl", batch_input("item-8", "item-9")), purpose="batch").id
        first, second = (client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                               completion_window="24h") for _ in range(2))
        for _ in range(3):
            assert client.batches.retrieve(first.id).status == "in_progress"
        assert fake.complete_batch(first.id)["status"] == "completed"
        done = client.batches.retrieve(first.id)
        assert done.output_file_id and done.request_counts.failed == 1
        (error_line,) = [json.loads(line) for line in client.files.content(done.error_file_id).text.splitlines()]
        assert error_line["response"] is None and error_line["error"]["code"] == "batch_expired"

        assert client.batches.cancel(second.id).status == "cancelling"
        assert client.batches.retrieve(second.id).status == "cancelled"
        with pytest.raises(openai.ConflictError):
            client.batches.cancel(first.id)
        page = client.batches.list(limit=1)
        assert [b.id for b in page.data] == [second.id] and page.has_more  # newest first
        assert [b.id for b in page] == [second.id, first.id]  # the client follows the cursor
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_missing")
        with pytest.raises(openai.BadRequestError, match="input_file_id"):
            client.batches.create(input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h")
