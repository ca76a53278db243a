"""OpenAI Batch API mode: `submit` writes the synthesis requests as JSONL batch files and uploads them,
`status` follows the batches, `collect` validates the answers and appends personas to the output.

Everything lives in a work directory beside the output (`OUTPUT.batch/`): the request files, a sidecar per
file with what `collect` needs to rebuild each item's personas (the item and the reviews in its prompt),
and `state.json`, rewritten atomically after every step. So each command can be killed and rerun: `submit`
uploads a file that was written but not uploaded, creates a batch for a file that was uploaded but has
none, and never sends an item that is done or in a live batch; `collect` skips collected batches. An item
whose answer is invalid goes to the failed-items file and is sent again by the next `submit` (there is no
repair turn in batch mode). Stage 1 (aspects) is not available in batch mode.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from ...catalog import Catalog
from ...errors import ConfigError, NotFoundError
from ...io import append_line
from ...models import Item, ItemPersonas, Review
from ...redaction import redact
from ..base import input_hash
from ..runner import Shard, drop_torn_tail, read_personas
from .generator import LLMGenerator, SynthesisRequest
from .schema import InvalidOutput, parse_personas, personas_schema
from .selection import PromptReview
from .settings import LLMSettings

ENDPOINT = "/v1/chat/completions"
LIVE = {"prepared", "uploaded", "validating", "in_progress", "finalizing", "completed", "cancelling"}
ENDED = {"failed", "expired", "cancelled"}


class BatchRecord(BaseModel):
    name: str
    item_ids: list[str]
    status: str = "prepared"
    input_file_id: str | None = None
    batch_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    request_counts: dict[str, int] = Field(default_factory=dict)
    collected: bool = False
    submitted_at: str | None = None


class BatchState(BaseModel):
    settings: dict = Field(description="The LLM settings of the first submit; status and collect reuse them.")
    batches: list[BatchRecord] = Field(default_factory=list)


class BatchJob:
    def __init__(self, generator: LLMGenerator, output: str | os.PathLike[str]):
        if generator.settings.aspects:
            raise ConfigError("--aspects is not available in batch mode (it needs a second round of requests)")
        self.generator = generator
        self.output = Path(output)
        self.workdir = self.output.with_name(self.output.name + ".batch")
        self.state_path = self.workdir / "state.json"

    @classmethod
    def resume(cls, output: str | os.PathLike[str], encoder, *, ledger=None, base_url: str | None = None) -> BatchJob:
        """The job of an earlier `submit`, with its settings (for status and collect)."""
        state_path = Path(output).with_name(Path(output).name + ".batch") / "state.json"
        if not state_path.exists():
            raise NotFoundError(f"no batch job for {output}: {state_path} does not exist; run `p4r personas batch submit`")
        saved = BatchState.model_validate_json(state_path.read_text("utf-8")).settings
        settings = LLMSettings(**{**saved, "base_url": base_url or saved.get("base_url")})
        return cls(LLMGenerator(settings, encoder, ledger=ledger), output)

    # --- state ----------------------------------------------------------------------------------------------------
    def load_state(self) -> BatchState:
        if self.state_path.exists():
            return BatchState.model_validate_json(self.state_path.read_text("utf-8"))
        return BatchState(settings=self.generator.settings.model_dump(mode="json"))

    def save_state(self, state: BatchState) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name("state.json.tmp")
        tmp.write_text(state.model_dump_json(indent=1), "utf-8")
        os.replace(tmp, self.state_path)

    # --- submit ---------------------------------------------------------------------------------------------------
    def submit(self, catalog: Catalog, *, shard: Shard | None = None, max_requests: int = 50_000) -> list[BatchRecord]:
        """Prepare, upload and start batches for every item not done and not in a live batch."""
        state = self.load_state()
        saved = LLMSettings(**state.settings)
        if saved.model != self.generator.settings.model or saved.output_params() != self.generator.settings.output_params():
            raise ConfigError(f"{self.workdir} holds batches made with other settings ({saved.model}, "
                              f"{saved.output_params()}); use the same settings or another output file")
        pending = {i for b in state.batches if not b.collected and b.status in LIVE for i in b.item_ids}
        done = self._done_hashes()
        todo = [(item, reviews) for item, reviews in catalog
                if (shard is None or shard.owns(item.item_id)) and item.item_id not in pending
                and done.get(item.item_id) != input_hash(item, reviews, self.generator.info)]
        for start in range(0, len(todo), max_requests):
            state.batches.append(self._prepare(todo[start:start + max_requests], len(state.batches)))
            self.save_state(state)
        for record in state.batches:
            if record.status == "prepared" or (record.status == "uploaded" and record.batch_id is None):
                self._start(record, state)
        return [b for b in state.batches if not b.collected]

    def _prepare(self, todo: list[tuple[Item, list[Review]]], number: int) -> BatchRecord:
        name = f"requests-{number:04d}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        client = self.generator.client
        with open(self.workdir / f"{name}.jsonl", "w", encoding="utf-8") as requests, \
                open(self.workdir / f"{name}.items.jsonl", "w", encoding="utf-8") as sidecar:
            for item, reviews in todo:
                request = self.generator.synthesis_request(item, reviews)
                body = client.request_body(request.messages, request.schema, "personas")
                requests.write(json.dumps({"custom_id": item.item_id, "method": "POST", "url": ENDPOINT,
                                           "body": body}, ensure_ascii=False) + "\n")
                sidecar.write(json.dumps(_sidecar_line(request, input_hash(item, reviews, self.generator.info)),
                                         ensure_ascii=False) + "\n")
        return BatchRecord(name=name, item_ids=[item.item_id for item, _ in todo])

    def _start(self, record: BatchRecord, state: BatchState) -> None:
        api = self.generator.client.openai
        if record.input_file_id is None:
            with open(self.workdir / f"{record.name}.jsonl", "rb") as fh:
                record.input_file_id = api.files.create(file=fh, purpose="batch").id
            record.status = "uploaded"
            self.save_state(state)
        batch = api.batches.create(input_file_id=record.input_file_id, endpoint=ENDPOINT, completion_window="24h",
                                   metadata={"p4r": "personas", "requests": record.name})
        record.batch_id, record.status = batch.id, batch.status
        record.submitted_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.save_state(state)

    # --- status ---------------------------------------------------------------------------------------------------
    def refresh(self) -> list[BatchRecord]:
        """Ask the endpoint how each uncollected batch is doing."""
        state = self.load_state()
        for record in state.batches:
            if record.batch_id is None or record.collected:
                continue
            batch = self.generator.client.openai.batches.retrieve(record.batch_id)
            record.status = batch.status
            record.output_file_id, record.error_file_id = batch.output_file_id, batch.error_file_id
            counts = batch.request_counts
            record.request_counts = counts.model_dump() if counts is not None else {}
        self.save_state(state)
        return state.batches

    # --- collect --------------------------------------------------------------------------------------------------
    def collect(self, failed_path: Path) -> dict[str, int]:
        """Append the personas of every finished batch; returns counts."""
        totals = {"collected_batches": 0, "generated": 0, "failed": 0, "waiting_batches": 0}
        self.refresh()
        state = self.load_state()
        self.output.parent.mkdir(parents=True, exist_ok=True)
        drop_torn_tail(self.output)
        with open(self.output, "a", encoding="utf-8") as out, open(failed_path, "a", encoding="utf-8") as failed:
            for record in state.batches:
                if record.collected or record.batch_id is None:
                    continue
                if record.status not in ENDED and record.status != "completed":
                    totals["waiting_batches"] += 1
                    continue
                generated, failures = self._collect_one(record, out)
                failed.writelines(json.dumps({"item_id": item_id, "error": redact(error), "batch": record.batch_id}) + "\n"
                                  for item_id, error in failures)
                record.collected = True
                self.save_state(state)  # after the personas are durable: a rerun never appends them twice
                totals["collected_batches"] += 1
                totals["generated"] += generated
                totals["failed"] += len(failures)
        return totals

    def _collect_one(self, record: BatchRecord, out) -> tuple[int, list[tuple[str, str]]]:
        sidecar = {line["item_id"]: line for line in _jsonl(self.workdir / f"{record.name}.items.jsonl")}
        done = self._done_hashes()  # a collect killed half-way through this batch appended some already
        answered = {i for i, saved in sidecar.items() if done.get(i) == saved["input_hash"]}
        failures: list[tuple[str, str]] = []
        generated = 0
        for line in self._download(record.output_file_id) + self._download(record.error_file_id):
            item_id = line.get("custom_id")
            if item_id not in sidecar or item_id in answered:
                continue
            answered.add(item_id)
            try:
                out_record = self._personas(sidecar[item_id], line)
            except InvalidOutput as exc:
                failures.append((item_id, str(exc)))
                continue
            append_line(out, out_record)
            generated += 1
        failures += [(i, f"no answer in batch {record.batch_id} ({record.status})") for i in sidecar if i not in answered]
        return generated, failures

    def _download(self, file_id: str | None) -> list[dict]:
        if file_id is None:
            return []
        text = self.generator.client.openai.files.content(file_id).text
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _personas(self, saved: dict, line: dict) -> ItemPersonas:
        response = line.get("response") or {}
        if line.get("error") or response.get("status_code") != 200:
            raise InvalidOutput(f"the batch answered {response.get('status_code')}: {line.get('error') or response}")
        body = response["body"]
        usage = body.get("usage") or {}
        settings = self.generator.settings
        self.generator.ledger.record("personas", settings.model, usage.get("prompt_tokens", 0),
                                     usage.get("completion_tokens", 0), batch=True)
        request = _request_from_sidecar(saved)
        choices = body.get("choices") or [{}]
        if choices[0].get("finish_reason") == "length":
            raise InvalidOutput(f"the answer was cut off at {settings.max_output_tokens} output tokens")
        drafts, dropped = parse_personas(choices[0].get("message", {}).get("content"), request.evidence_ids,
                                         request.count)
        result = self.generator.finish(request, drafts, dropped)
        return ItemPersonas(item_id=saved["item"]["item_id"], personas=result.personas, generator=self.generator.info,
                            input_hash=saved["input_hash"], used_review_ids=result.used_review_ids, notes=result.notes)

    def _done_hashes(self) -> dict[str, str]:
        if not self.output.exists():
            return {}
        drop_torn_tail(self.output)
        return {item_id: r.input_hash for item_id, r in read_personas(self.output).items()}


def _sidecar_line(request: SynthesisRequest, digest: str) -> dict:
    return {"item_id": request.item.item_id, "input_hash": digest, "item": request.item.model_dump(mode="json"),
            "reviews": [{"local_id": r.local_id, "text": r.text, "review": r.review.model_dump(mode="json")}
                        for r in request.reviews],
            "count": list(request.count)}


def _request_from_sidecar(saved: dict) -> SynthesisRequest:
    reviews = [PromptReview(r["local_id"], Review.model_validate(r["review"]), r["text"]) for r in saved["reviews"]]
    count = (saved["count"][0], saved["count"][1])
    return SynthesisRequest(Item.model_validate(saved["item"]), reviews, [],
                            personas_schema([r.local_id for r in reviews], count), count)


def _jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
