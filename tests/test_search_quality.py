"""The embedded engine against the numpy reference scorer, on real text embeddings.

Exact mode must agree with the reference exactly; the HNSW path must reach recall@10 >= 0.95. Random
Gaussian vectors are a worst case for HNSW, so the recall test uses real review embeddings.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import EXAMPLES, read_jsonl
from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.documents import ItemDocument
from p4r_search.models import GeneratorInfo, Persona
from p4r_search.personas.runner import read_personas
from p4r_search.query import PersonaQuery
from p4r_search.scoring import ExactScorer

ROWS_PER_ITEM = 5
QUERIES = 60


def test_exact_mode_returns_the_reference_top10(subset, subset_personas, subset_index, encoder):
    records = read_personas(subset_personas)
    ids = sorted(records)
    # the reference: persona texts encoded afresh, scored by brute force, independent of the index
    reference = ExactScorer(ids, [encoder.encode([p.embedding_text for p in records[i].personas]) for i in ids])
    queries = encoder.encode([r["text"] for r in read_jsonl(subset["reviews"])[::40]])
    backend = EmbeddedBackend(subset_index)
    for q in queries:
        expected = reference.top_k(q, 10)
        got = backend.search(PersonaQuery(vector=q, k=10, mode="exact"))
        assert [h.item_id for h in got] == [s.item_id for s in expected]
        assert [h.score for h in got] == pytest.approx([s.score for s in expected], abs=1e-5)
        best = records[got[0].item_id].personas[expected[0].persona_index]
        assert got[0].persona.persona_id == best.persona_id


@pytest.fixture(scope="module")
def review_rows(encoder):
    """Real review embeddings: consecutive groups of ROWS_PER_ITEM reviews act as one item's personas."""
    texts = [r["text"] for r in read_jsonl(EXAMPLES / "reviews.jsonl")][:2000]
    vectors = encoder.encode(texts)
    rows, queries = vectors[: -QUERIES], vectors[-QUERIES:]
    usable = len(rows) // ROWS_PER_ITEM * ROWS_PER_ITEM
    return rows[:usable].reshape(-1, ROWS_PER_ITEM, rows.shape[1]), queries


def pseudo_item(n: int, vectors: np.ndarray) -> ItemDocument:
    gen = GeneratorInfo(name="reviews-as-personas", version="1", model="none", prompt_version="test")
    personas = tuple(
        Persona(persona_id=f"{n}-{j}", name="Review Row", description="a review", rationale="test row",
                evidence_review_ids=[f"{n}-{j}"], support=1 / len(vectors))
        for j in range(len(vectors))
    )
    return ItemDocument(item_id=f"item{n:04d}", title=f"item {n}", personas=personas, vectors=vectors,
                        generator=gen, input_hash="-", encoder_model="packaged:all-MiniLM-L6-v2")


def test_hnsw_recall_at_10_on_real_text_embeddings(tmp_path, review_rows):
    items, queries = review_rows
    backend = EmbeddedBackend(tmp_path, writable=True, exact_threshold=0)  # 0: always take the HNSW path
    backend.upsert(pseudo_item(n, v) for n, v in enumerate(items))
    reference = ExactScorer([f"item{n:04d}" for n in range(len(items))], list(items))
    recalls = []
    for q in queries:
        expected = {s.item_id for s in reference.top_k(q, 10)}
        got = {h.item_id for h in backend.search(PersonaQuery(vector=q, k=10, mode="knn"))}
        recalls.append(len(expected & got) / 10)
    assert len(items) * ROWS_PER_ITEM > 1500
    assert np.mean(recalls) >= 0.95, f"recall@10 {np.mean(recalls):.3f}"
