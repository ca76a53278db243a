"""The callable classes that Ray Data runs in actor pools (`map_batches(Class, concurrency=N)`): each actor
builds its generator or encoder once, then handles batches of items.

`Generate`: units → personas lines (or failures). `Embed`: personas lines → vectors → (optionally) bulk
writes to a cluster → one shard file per batch, written whole; it returns one row of counts per batch. For
the extractive generator both run in one actor (`GenerateAndEmbed`), since its generation is encoding.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..documents import build_documents
from ..encoder import Encoder
from ..models import ItemPersonas
from ..personas import make_generator
from ..personas.base import GenerationFailed
from .files import Location, write_atomically
from .shards import ShardLine, StoredVectors, jsonl_records, write_shard
from .specs import ClusterSpec, GeneratorSpec, VectorSpec
from .units import unit_of


def rows_of(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A numpy batch as rows of plain Python values (numpy's int64 is not JSON)."""
    columns = list(batch)
    return [{c: v.item() if isinstance(v, np.generic) else v for c, v in zip(columns, values)}
            for values in zip(*(batch[c] for c in columns))]


def columns_of(rows: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, list]:
    return {name: [row[name] for row in rows] for name in names}


GENERATED = ("item_id", "item", "reviews", "input_hash", "line", "failure", "stopped", "generated_by")
COUNTS = ("worker", "generated_by", "generated", "personas", "failed", "stopped", "written", "bulk_failed", "text_fallbacks", "shard")


def worker_name() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def make_encoder(model: str | None, num_gpus: float) -> Encoder:
    return Encoder(model, device="cuda" if num_gpus > 0 else None)


class Generate:
    def __init__(self, spec: GeneratorSpec, coordinator=None, threads: int = 1, max_cost: float | None = None,
                 encoder: Encoder | None = None):
        self.encoder = encoder or make_encoder(spec.embedding_model, 0)
        parts = {}
        if spec.name == "llm":
            from ..personas.llm import ResponseCache
            from .coordination import RemoteLedger, RemoteLimiter

            self.ledger = RemoteLedger(coordinator)
            parts = {"ledger": self.ledger, "limiter": RemoteLimiter(coordinator), "cache": ResponseCache(spec.cache_dir)}
        self.generator = make_generator(spec.name, self.encoder, seed=spec.seed, llm=spec.llm, **parts)
        self.threads, self.max_cost = threads, max_cost
        self.worker = worker_name()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        rows = rows_of(batch)
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            out = list(pool.map(self._one, rows))
        return columns_of(out, GENERATED)

    def _one(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {name: row.get(name, "") for name in GENERATED} | {"line": "", "failure": "", "stopped": False,
                                                                 "generated_by": self.worker}
        if self._over_budget():
            return out | {"stopped": True}
        item, reviews = unit_of(row)
        try:
            made = self.generator.generate(item, reviews)
        except GenerationFailed as failure:
            return out | {"failure": json.dumps(failure.record(row["input_hash"]), ensure_ascii=False)}
        return out | {"line": made.line(item.item_id, self.generator.info, row["input_hash"]).model_dump_json(exclude_none=True)}

    def _over_budget(self) -> bool:
        if self.max_cost is None:
            return False
        spent = self.ledger.total_cost
        return spent is not None and spent >= self.max_cost


class Embed:
    def __init__(self, spec: GeneratorSpec, vectors: VectorSpec, output: Location, parts: Location, run_id: str,
                 fmt: str, cluster: ClusterSpec | None = None, num_gpus: float = 0.0, encoder: Encoder | None = None):
        self.encoder = encoder or make_encoder(spec.embedding_model, num_gpus)
        self.vectors, self.output, self.parts, self.run_id, self.fmt = vectors, output, parts, run_id, fmt
        self.backend = _open_cluster(cluster) if cluster is not None else None
        self.chunk = cluster.chunk_size if cluster is not None else 0
        self.worker = worker_name()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        rows = rows_of(batch)
        done = [r for r in rows if r["line"]]
        failures = [json.loads(r["failure"]) for r in rows if r["failure"]]
        counts = {"worker": self.worker, "generated_by": json.dumps(sorted({str(r["generated_by"]) for r in rows})),
                  "generated": 0, "personas": 0, "failed": len(failures),
                  "stopped": sum(bool(r["stopped"]) for r in rows), "written": 0, "bulk_failed": 0,
                  "text_fallbacks": 0, "shard": ""}
        if failures:
            write_atomically(self.parts.child(f"failed-{uuid.uuid4().hex}.jsonl"), jsonl_records(failures))
        if done:
            counts.update(self._embed_and_write(done))
        return columns_of([counts], COUNTS)

    def _embed_and_write(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        records = [ItemPersonas.model_validate_json(r["line"]) for r in rows]
        units = [unit_of(r) for r in rows]
        items = {item.item_id: item for item, _ in units}
        texts = None
        if self.vectors.kind != "text":
            texts = {review.review_id: review.text for _, reviews in units for review in reviews}
        docs = list(build_documents(records, self.encoder, items, batch_items=len(records),
                                    persona_vector=self.vectors.kind, review_texts=texts,
                                    evidence_prior=self.vectors.evidence_prior))
        failed_ids, written = self._write_cluster(docs) if self.backend is not None else (set(), 0)
        lines = [ShardLine(**record.model_dump(), vectors=_stored(doc)) for record, doc in zip(records, docs)
                 if record.item_id not in failed_ids]
        shard = write_shard(self.output, self.run_id, lines, self.fmt) or ""
        return {"generated": len(lines), "personas": sum(len(line.personas) for line in lines),
                "written": written, "bulk_failed": len(failed_ids),
                "text_fallbacks": sum(doc.text_fallbacks for doc in docs), "shard": shard}

    def _write_cluster(self, docs) -> tuple[set[str], int]:
        """Bulk-write with the single-machine code and retries; the documents that failed go to a part file
        (merged into the failed-docs file at the end) and stay out of the shard, so a rerun redoes them."""
        with tempfile.TemporaryDirectory(prefix="p4r-bulk-") as tmp:
            failed_path = Path(tmp) / "failed.jsonl"
            report = self.backend.write(docs, partial=False, failed_path=failed_path, chunk=self.chunk)
            if not failed_path.exists():
                return set(), report.written
            data = failed_path.read_bytes()
        write_atomically(self.parts.child(f"failed-docs-{uuid.uuid4().hex}.jsonl"), data)
        return {json.loads(line)["item_id"] for line in data.splitlines() if line.strip()}, report.written


class GenerateAndEmbed:
    """Both stages in one actor sharing one encoder (the extractive generator, whose work is encoding). The
    review texts embedded to cluster an item's reviews are kept for the batch, so the evidence vectors reuse
    them instead of embedding every review a second time (as `personas generate` then `index build` do)."""

    def __init__(self, spec: GeneratorSpec, vectors: VectorSpec, output: Location, parts: Location, run_id: str,
                 fmt: str, cluster: ClusterSpec | None = None, num_gpus: float = 0.0):
        self.encoder = BatchMemo(make_encoder(spec.embedding_model, num_gpus))
        self.generate = Generate(spec, encoder=self.encoder)
        self.embed = Embed(spec, vectors, output, parts, run_id, fmt, cluster, num_gpus, encoder=self.encoder)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        try:
            return self.embed(self.generate(batch))
        finally:
            self.encoder.forget()


class BatchMemo:
    """An encoder that remembers the vectors of the texts it embedded until `forget()`."""

    def __init__(self, encoder: Encoder):
        self.inner = encoder
        self.memo: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts) -> np.ndarray:
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if missing:
            fresh = self.inner.encode(missing)
            with self._lock:
                self.memo.update(zip(missing, fresh))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return np.stack([self.memo[t] for t in texts])

    def forget(self) -> None:
        with self._lock:
            self.memo.clear()


def _stored(doc) -> StoredVectors:
    return StoredVectors.of(np.asarray(doc.vectors), model=doc.encoder_model, kind=doc.persona_vector,
                            evidence_prior=doc.evidence_prior, text_fallbacks=doc.text_fallbacks)


def _open_cluster(spec: ClusterSpec):
    from ..backends.cluster import ClientTransport, ClusterBackend
    from ..backends.connect import make_client

    transport = ClientTransport(make_client(spec.settings), spec.settings.distribution)
    return ClusterBackend(transport, spec.cluster, spec.index, os_engine=spec.os_engine)
