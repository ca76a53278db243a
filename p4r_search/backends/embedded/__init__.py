"""The embedded engine (the default backend): tantivy for storage and BM25, usearch for HNSW.

Layout of an index directory: `store/` (tantivy: which rows exist, their BM25 text and filters, and the
generation) and `vectors-<generation>/` (the vectors, explanation payloads and HNSW graph of that
generation; see vectors.py). A write saves its new rows as `pending-<generation>.npz`, commits the
store, then saves the cache for the new generation. A crash before the commit leaves the old state; a
crash after it leaves a store whose generation has no cache: opening it for reading fails with an error
naming `p4r index repair`; opening it for writing repairs it from the previous cache and the pending rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...documents import ItemDocument
from ...errors import ConfigError, IndexStateError, NotFoundError
from ...models import EvidenceSnippet, Hit, ItemCard, MatchedPersona, PersonaCard
from ...query import PersonaQuery, item_filter_values, values_like
from .search import SearchPlan, allowed_items
from .store import Meta, Row, TantivyStore
from .vectors import (
    HnswConfig,
    RowBatch,
    VectorCache,
    cache_dir,
    latest_saved_rows,
    pending_files,
    pending_path,
    read_pending,
    write_pending,
)

STORE_DIR = "store"


class EmbeddedBackend:
    """An index directory on this machine. `writable=True` creates it and repairs a stale vector cache."""

    def __init__(
        self, path: str | Path, *, writable: bool = False, exact_threshold: int = 20_000, hnsw: HnswConfig | None = None,
        create: bool | None = None, check: bool = False,
    ):
        """`create` (default: `writable`): make the index when there is none; else NotFoundError (exit 66).
        `check`: hash every file on open, however large (checksums.py); damage is an IndexStateError (exit 74)."""
        self.path = Path(path)
        self.full_check = True if check else None
        self.writable = writable
        self.exact_threshold = exact_threshold
        self.hnsw = hnsw or HnswConfig()
        self.store = TantivyStore(self.path / STORE_DIR, create=writable if create is None else create,
                                  full_check=True if writable or check else None)
        self._loaded: tuple[int, VectorCache] | None = None  # (generation, cache): one attribute, swapped whole
        self._meta: Meta | None = None

    # -- state ------------------------------------------------------------------------------------
    @property
    def meta(self) -> Meta:
        """The store's state as of opening or the last write here; `refresh()` sees other writers' commits."""
        if self._meta is None:
            self._meta = self.store.meta()
        return self._meta

    def refresh(self) -> None:
        self.store.refresh()
        self._meta = None

    @property
    def model_name(self) -> str | None:
        return self.meta.model

    def vectors(self) -> VectorCache | None:
        """The vector cache of the store's current generation (None while the index is empty)."""
        meta = self.meta
        if meta.dim is None:
            return None
        loaded = self._loaded
        if loaded is not None and loaded[0] == meta.generation:
            return loaded[1]
        folder = cache_dir(self.path, meta.generation)
        if folder.is_dir():  # saved whole (renamed into place): a file missing from it is damage
            cache = VectorCache.load(folder, meta.dim, self.hnsw, writable=self.writable, full_check=self.full_check)
        elif self.writable:
            cache = self._rebuild(meta)
        else:
            raise IndexStateError(
                f"{self.path}: the vector index does not match the store (generation {meta.generation}); "
                f"a write was interrupted. Rebuild it with: p4r index repair --index {self.path}"
            )
        self._loaded = (meta.generation, cache)
        return cache

    def repair(self) -> int:
        """Rebuild the vector cache of the store's generation; returns the number of rows."""
        meta = self.meta
        if meta.dim is None:
            return 0
        cache = self._rebuild(meta)
        self._loaded = (meta.generation, cache)
        return len(cache)

    def _rebuild(self, meta: Meta) -> VectorCache:
        """From the last saved cache plus the pending writes that the store has committed since."""
        saved = latest_saved_rows(self.path, meta.dim, self.hnsw, meta.generation)
        pending = [(gen, read_pending(path, meta.dim)) for path, gen in pending_files(self.path) if gen <= meta.generation]
        sources = ([saved] if saved is not None else []) + [rows for _, rows in pending]
        last = pending_path(self.path, meta.generation)
        lost = "" if meta.generation in {gen for gen, _ in pending} else f"; {last.name} (its last write's) is missing"
        cache = VectorCache.rebuild(meta.dim, self.store.scan_rows(), sources, self.hnsw, lost_hint=lost)
        cache.save(self.path, meta.generation)
        return cache

    # -- writing ----------------------------------------------------------------------------------
    def upsert(self, documents: Iterable[ItemDocument]) -> int:
        """Replace the personas of every given item, in one atomic commit."""
        self._require_writable()
        self.refresh()  # write on top of the latest commit, whoever made it
        meta, cache = self.meta, self.vectors()
        next_key = meta.next_row_key
        rows: list[tuple[Row, np.ndarray, bytes]] = []
        item_ids: dict[str, None] = {}
        dim, model = meta.dim, meta.model
        kind = meta.persona_vector or ("text" if dim is not None else None)  # indexes from before the kinds
        prior = meta.evidence_prior if meta.evidence_prior is not None else (0.0 if dim is not None else None)
        for doc in documents:
            dim, model, kind = self._check_compatible(doc, dim, model, kind)
            prior = self._check_prior(doc, prior)
            if doc.item_id in item_ids:
                rows = [r for r in rows if r[0].item_id != doc.item_id]  # the last version of an item wins
            item_ids[doc.item_id] = None
            for persona, vector in zip(doc.personas, doc.vectors):
                rows.append((_row(next_key, doc, persona), vector, _payload(doc, persona)))
                next_key += 1
        if not item_ids:
            return 0
        new_meta = Meta(generation=meta.generation + 1, next_row_key=next_key, dim=dim, model=model,
                        persona_vector=kind, evidence_prior=prior)
        batch = RowBatch.of(dim, [r.row_key for r, _, _ in rows], [r.item_id for r, _, _ in rows],
                            [v for _, v, _ in rows], [p for _, _, p in rows])
        write_pending(self.path, new_meta.generation, batch)
        self.store.commit(new_meta, delete_items=item_ids, rows=[r for r, _, _ in rows])
        self._meta = new_meta
        cache = cache or VectorCache.empty(dim, self.hnsw)
        cache.apply(removed_items=item_ids, rows=batch)
        self._save(cache, new_meta.generation)
        return len(item_ids)

    def delete(self, item_ids: Sequence[str]) -> int:
        self._require_writable()
        self.refresh()
        meta, cache = self.meta, self.vectors()
        if cache is None:
            return 0
        present = [i for i in dict.fromkeys(item_ids) if i in cache.item_rows]
        if not present:
            return 0
        new_meta = replace(meta, generation=meta.generation + 1)
        self.store.commit(new_meta, delete_items=present, rows=())
        self._meta = new_meta
        cache.apply(removed_items=present, rows=RowBatch.of(meta.dim, [], [], [], []))
        self._save(cache, new_meta.generation)
        return len(present)

    def _save(self, cache: VectorCache, generation: int) -> None:
        cache.save(self.path, generation)
        self._loaded = (generation, cache)

    def _require_writable(self) -> None:
        if not self.writable:
            raise ConfigError(f"{self.path} is open read-only")

    @staticmethod
    def _check_compatible(doc: ItemDocument, dim: int | None, model: str | None,
                          kind: str | None) -> tuple[int, str, str]:
        doc_dim = doc.vectors.shape[1]
        if dim is not None and doc_dim != dim:
            raise ConfigError(f"item {doc.item_id!r} has {doc_dim}-d vectors; this index holds {dim}-d vectors")
        if model is not None and doc.encoder_model != model:
            raise ConfigError(
                f"item {doc.item_id!r} was encoded with {doc.encoder_model!r}; this index uses {model!r}. "
                "Use the same --model, or build a new index"
            )
        if kind is not None and doc.persona_vector != kind:
            raise ConfigError(
                f"item {doc.item_id!r} has {doc.persona_vector!r} persona vectors; this index holds {kind!r} ones. "
                "Use the same --persona-vector, or build a new index"
            )
        return doc_dim, doc.encoder_model, doc.persona_vector

    @staticmethod
    def _check_prior(doc: ItemDocument, prior: float | None) -> float:
        if prior is not None and doc.evidence_prior != prior:
            raise ConfigError(f"item {doc.item_id!r} has evidence prior {doc.evidence_prior}; this index holds "
                              f"{prior}. Use the same --evidence-prior, or build a new index")
        return doc.evidence_prior

    # -- reading ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        cache = self.vectors()
        return 0 if cache is None else len(cache.item_rows)

    def item_ids(self) -> list[str]:
        cache = self.vectors()
        return [] if cache is None else sorted(cache.item_rows)

    def existing_ids(self, item_ids: Sequence[str]) -> set[str]:
        """Which of these items the index holds."""
        cache = self.vectors()
        return set() if cache is None else {i for i in item_ids if i in cache.item_rows}

    def filter_values(self, field: str, like: str | None = None) -> list[str]:
        """Values of a filter field (`categories`, `attributes.NAME`), most common first; with `like`, only
        those equal to it ignoring case (for "did you mean")."""
        return values_like(list(self.store.filter_values(field)), like)

    def count_items(self, filters: Mapping[str, tuple[str, ...]], candidate_ids: Sequence[str] | None = None,
                    exclude_ids: Iterable[str] = ()) -> int:
        """How many items pass the filters, are among the candidates (if given) and are not excluded."""
        cache = self.vectors()
        if cache is None:
            return 0
        items = set(cache.item_rows)
        if (allowed := allowed_items(cache, self.store, filters, candidate_ids)) is not None:
            items &= allowed
        return len(items - set(exclude_ids))

    def rank_of(self, vector: np.ndarray, item_id: str, exclude_ids: Iterable[str] = ()) -> int | None:
        """The item's rank in an exact search for `vector` that excludes `exclude_ids` (None when absent),
        from one scan: what `Recommender.explain` reports, without building a thousand hits to find it."""
        cache = self.vectors()
        if cache is None:
            return None
        query = PersonaQuery(vector=vector, mode="exact")  # the search's normalisation and checks
        _check_dimensions(query, cache)
        return cache.scorer.rank_of(query.vector, item_id, exclude_ids)

    def persona_vectors(self, item_ids: Sequence[str]) -> dict[str, np.ndarray]:
        cache = self.vectors()
        if cache is None:
            return {}
        return {i: v for i in item_ids if (v := cache.item_vectors(i)) is not None}

    def personas(self, item_id: str) -> list[MatchedPersona]:
        cache = self.vectors()
        return [] if cache is None else [_persona(json.loads(p)) for p in cache.item_payloads(item_id)]

    def item_card(self, item_id: str) -> ItemCard:
        """The item's title and every persona with its evidence; NotFoundError when the index lacks it."""
        cache = self.vectors()
        payloads = [json.loads(p) for p in cache.item_payloads(item_id)] if cache is not None else []
        if not payloads:
            raise NotFoundError(f"item {item_id!r} is not in the index {self.path}")
        cards = [PersonaCard(persona=_persona(p), evidence=[EvidenceSnippet(**e) for e in p["evidence"]]) for p in payloads]
        return ItemCard(item_id=item_id, title=payloads[0]["title"], personas=cards)

    def search(self, query: PersonaQuery) -> list[Hit]:
        cache = self.vectors()
        if cache is None or len(cache) == 0:
            return []
        _check_dimensions(query, cache)
        scored = SearchPlan(query, cache, self.store, self.exact_threshold).run()
        return [_hit(s, json.loads(cache.payload(s.item_id, s.persona_index)), query.explain) for s in scored]


def _check_dimensions(query: PersonaQuery, cache: VectorCache) -> None:
    if query.vector.shape[0] != cache.dim:
        raise ConfigError(f"the profile has {query.vector.shape[0]} dimensions; this index holds {cache.dim}")


def _row(key: int, doc: ItemDocument, persona) -> Row:
    filters = item_filter_values(doc.item_id, doc.categories, doc.attributes)
    return Row(key, doc.item_id, persona.embedding_text, filters)


def _payload(doc: ItemDocument, persona) -> bytes:
    """What a hit shows: the item's title, the persona and its evidence, and where it came from."""
    payload = {
        "title": doc.title,
        "persona": persona.model_dump(mode="json", exclude={"evidence_snippets"}),
        "evidence": [s.model_dump(mode="json") for s in persona.evidence_snippets],
        "generator": doc.generator.model_dump(mode="json"),
        "input_hash": doc.input_hash,
    }
    return json.dumps(payload, ensure_ascii=False).encode()


def _persona(payload: dict) -> MatchedPersona:
    p = payload["persona"]
    return MatchedPersona(
        persona_id=p["persona_id"], name=p["name"], description=p["description"], rationale=p["rationale"], support=p["support"]
    )


def _hit(scored, payload: dict, explain: bool) -> Hit:
    return Hit(
        item_id=scored.item_id,
        title=payload["title"],
        score=scored.score,
        scores=scored.components,
        persona=_persona(payload) if explain else None,
        evidence=[EvidenceSnippet(**e) for e in payload["evidence"]] if explain else [],
    )
