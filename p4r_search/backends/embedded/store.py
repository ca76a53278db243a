"""The durable half of the embedded engine: a tantivy index of persona rows.

One tantivy document per persona (like a Lucene nested child document), holding the item id, a unique
u64 row key, the BM25 text and `field=value` filter tokens. The vectors and explanation payloads live in
the vector cache (vectors.py), once. A single `meta` document holds the generation, which every commit
increments in the same atomic commit as the rows: the vector cache is valid only for the generation it
was built from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tantivy

from ...errors import IndexStateError, NotFoundError
from .checksums import verify_store
from .damage import damaged, reading_store

FORMAT_VERSION = 2  # 2: vectors and payloads moved out of the store
TEXT_TOKENIZER = "en_stem"  # tantivy's built-in: simple tokenizer, remove long, lowercase, English stemmer


def _query_analyzer() -> tantivy.TextAnalyzer:
    """The same analysis as `en_stem`, so that user text becomes the index's terms (a `match` query)."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("kind", tokenizer_name="raw", index_option="basic")
    sb.add_unsigned_field("row_key", stored=True, indexed=True, fast=True)
    sb.add_text_field("item_id", stored=True, tokenizer_name="raw", index_option="basic")
    sb.add_text_field("text", tokenizer_name=TEXT_TOKENIZER, index_option="position")
    sb.add_text_field("filter", tokenizer_name="raw", index_option="basic")
    sb.add_bytes_field("payload", stored=True)  # the meta document's JSON
    return sb.build()


@dataclass(frozen=True)
class Meta:
    generation: int = 0
    next_row_key: int = 1
    dim: int | None = None
    model: str | None = None
    format: int = FORMAT_VERSION
    persona_vector: str | None = None  # what the persona vectors embed: text, evidence or blend (None: text)
    evidence_prior: float | None = None  # persona_vectors.py: pseudo-reviews at the item centroid


def _no_index(index_dir: Path) -> str:
    build = f"build one with: p4r index build --personas PERSONAS.jsonl --items ITEMS.jsonl --index {index_dir}"
    if not index_dir.exists():
        return f"{index_dir}: no such index directory; {build}"
    return f"{index_dir}: not an index (it has no store/ folder); {build}"


@dataclass(frozen=True)
class Row:
    row_key: int
    item_id: str
    text: str
    filters: Sequence[str]


class TantivyStore:
    def __init__(self, path: Path, *, create: bool, full_check: bool | None = None):
        """`full_check`: check the CRC of every segment file (None: only while they are small; checksums.py)."""
        self.path = path
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir():
            raise NotFoundError(_no_index(path.parent))
        elif not tantivy.Index.exists(str(path)):
            if any(p.name != ".tantivy-meta.lock" and p.name != ".tantivy-writer.lock" for p in path.iterdir()):
                raise damaged(path.parent, path / "meta.json", "the file is missing")
            raise IndexStateError(f"{path.parent}: no index here; create it with: p4r index build --index {path.parent} ...")
        if (path / "meta.json").exists():
            verify_store(path.parent, path, full_check)  # before tantivy: some damage makes it panic
        with self._reading():
            self.index = tantivy.Index(_schema(), path=str(path), reuse=True)
        self.schema = self.index.schema
        self.analyzer = _query_analyzer()
        self._searcher: tantivy.Searcher | None = None

    # -- reading ----------------------------------------------------------------------------------
    def searcher(self) -> tantivy.Searcher:
        """A point-in-time view, reused until `refresh()` (as a Lucene reader is until reopened)."""
        if self._searcher is None:
            with self._reading():
                self.index.reload()
                self._searcher = self.index.searcher()
        return self._searcher

    def _reading(self):
        return reading_store(self.path.parent, self.path)

    def refresh(self) -> None:
        self._searcher = None

    def meta(self, searcher: tantivy.Searcher | None = None) -> Meta:
        searcher = searcher or self.searcher()
        with self._reading():
            hits = searcher.search(self._term("kind", "meta"), limit=2).hits
            if not hits and searcher.num_docs:
                raise ValueError(f"none of its {searcher.num_docs} documents is the meta document")
            if not hits:
                return Meta()
            data = json.loads(searcher.doc(hits[0][1])["payload"][0])
        if data.get("format") != FORMAT_VERSION:
            index_dir = self.path.parent
            raise IndexStateError(f"{index_dir}: index format {data.get('format')} is not {FORMAT_VERSION} (written by an "
                                  f"older p4r-search); rebuild it: delete {index_dir} and run `p4r index build` again")
        return Meta(**data)

    def scan_rows(self) -> Iterator[tuple[int, str]]:
        """(row_key, item_id) of every persona row: the rows a vector cache must hold."""
        searcher = self.searcher()
        with self._reading():
            hits = searcher.search(self._term("kind", "persona"), limit=max(searcher.num_docs, 1)).hits
            rows = [(doc["row_key"][0], doc["item_id"][0]) for doc in (searcher.doc(a) for _, a in hits)]
        yield from rows

    def filter_row_keys(self, filters: dict[str, tuple[str, ...]]) -> np.ndarray:
        """Row keys of the personas whose item passes every filter (values of one field are OR-ed)."""
        searcher = self.searcher()
        query = self._filter_query(filters)
        addresses = [a for _, a in searcher.search(query, limit=max(searcher.num_docs, 1), count=False).hits]
        return np.asarray(searcher.fast_field_values("row_key", addresses), dtype=np.uint64)

    def filter_values(self, field: str) -> dict[str, int]:
        """The values of one filter field in live persona rows (`categories` → {"Dresses": 12, …}), read from
        the term dictionary: value → number of persona rows that carry it."""
        prefix = f"{field}="
        terms = self.searcher().terms_with_prefix("filter", prefix, filter_query=self._term("kind", "persona"))
        return {term[len(prefix):]: count for term, count in terms if count > 0}

    def bm25(self, text: str, limit: int, filters: dict[str, tuple[str, ...]], item_ids: Sequence[str] | None):
        """(row_key, BM25 score) of the best-matching persona rows. User text only ever becomes terms."""
        terms = list(dict.fromkeys(self.analyzer.analyze(text)))
        if not terms:
            return []
        should = [(tantivy.Occur.Should, self._term("text", t)) for t in terms]
        clauses = [(tantivy.Occur.Must, tantivy.Query.boolean_query(should))]
        if filters:
            clauses.append((tantivy.Occur.Must, tantivy.Query.const_score_query(self._filter_query(filters), 0.0)))
        if item_ids is not None:
            ids = tantivy.Query.term_set_query(self.schema, "item_id", list(item_ids))
            clauses.append((tantivy.Occur.Must, tantivy.Query.const_score_query(ids, 0.0)))
        searcher = self.searcher()
        hits = searcher.search(tantivy.Query.boolean_query(clauses), limit=limit, count=False).hits
        keys = searcher.fast_field_values("row_key", [a for _, a in hits])
        return [(int(key), float(score)) for (score, _), key in zip(hits, keys)]

    # -- writing ----------------------------------------------------------------------------------
    def commit(self, meta: Meta, delete_items: Iterable[str], rows: Iterable[Row]) -> None:
        """Delete items, add rows and bump the generation in one atomic tantivy commit."""
        writer = self.index.writer(heap_size=64_000_000, num_threads=1)
        try:
            for item_id in delete_items:
                writer.delete_documents_by_term("item_id", item_id)
            for row in rows:
                writer.add_document(self._document(row))
            writer.delete_documents_by_term("kind", "meta")
            meta_doc = tantivy.Document(kind="meta", payload=json.dumps(meta.__dict__).encode())
            writer.add_document(meta_doc)
            writer.commit()
            self.refresh()
        except BaseException:
            writer.rollback()
            raise
        finally:
            writer.wait_merging_threads()

    def _document(self, row: Row) -> tantivy.Document:
        doc = tantivy.Document()
        doc.add_text("kind", "persona")
        doc.add_unsigned("row_key", row.row_key)
        doc.add_text("item_id", row.item_id)
        doc.add_text("text", row.text)
        for token in row.filters:
            doc.add_text("filter", token)
        return doc

    # -- queries ----------------------------------------------------------------------------------
    def _term(self, field: str, value: str) -> tantivy.Query:
        return tantivy.Query.term_query(self.schema, field, value)

    def _filter_query(self, filters: dict[str, tuple[str, ...]]) -> tantivy.Query:
        per_field = [
            (tantivy.Occur.Must, tantivy.Query.term_set_query(self.schema, "filter", [f"{name}={v}" for v in values]))
            for name, values in filters.items()
        ]
        per_field.append((tantivy.Occur.Must, self._term("kind", "persona")))
        return tantivy.Query.boolean_query(per_field)
