"""The embedded engine on real tantivy + usearch folders: writes, filters, crash safety, search paths."""

from __future__ import annotations

import numpy as np
import pytest

from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.backends.embedded.vectors import cache_dir
from p4r_search.documents import ItemDocument
from p4r_search.errors import ConfigError, IndexStateError, NotFoundError
from p4r_search.models import EvidenceSnippet, GeneratorInfo, Persona
from p4r_search.query import PersonaQuery

GEN = GeneratorInfo(name="test", version="1", model="none", prompt_version="v1")
DIM = 8


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def doc(item_id: str, vectors: np.ndarray, *, words=("soft", "fabric"), category="Dresses", model="m") -> ItemDocument:
    personas = tuple(
        Persona(
            persona_id=f"{item_id}-p{i}",
            name=f"{words[0].title()} Fans",
            description=f"Reviewers who talk about {' '.join(words)}.",
            rationale="1 of 1 reviews",
            evidence_review_ids=[f"{item_id}-r{i}"],
            support=1 / len(vectors),
            evidence_snippets=[EvidenceSnippet(review_id=f"{item_id}-r{i}", text=f"snippet {item_id} {i}")],
        )
        for i in range(len(vectors))
    )
    return ItemDocument(
        item_id=item_id, title=f"Title {item_id}", personas=personas, vectors=unit(vectors), generator=GEN,
        input_hash="h", encoder_model=model, categories=(category,), attributes={"colour": "red"},
    )


@pytest.fixture
def docs():
    rng = np.random.default_rng(7)
    return [doc(f"i{n:02d}", rng.normal(size=(3, DIM)), category="Dresses" if n % 2 else "Tops") for n in range(30)]


def query(vector, **kw):
    return PersonaQuery(vector=np.asarray(vector, np.float32), **kw)


def test_upsert_twice_replaces_and_leaves_no_duplicates(tmp_path, docs):
    backend = EmbeddedBackend(tmp_path, writable=True)
    assert backend.upsert(docs) == 30
    changed = doc("i03", np.eye(DIM)[:2], words=("petite", "length"))
    assert backend.upsert([changed]) == 1
    reopened = EmbeddedBackend(tmp_path)
    assert len(reopened) == 30 and len(reopened.vectors()) == 29 * 3 + 2
    assert [p.name for p in reopened.personas("i03")] == ["Petite Fans", "Petite Fans"]
    hits = reopened.search(query(np.eye(DIM)[0], k=30, num_candidates=30, mode="exact"))
    assert len({h.item_id for h in hits}) == len(hits) == 30
    assert hits[0].item_id == "i03" and hits[0].score == pytest.approx(1.0)
    assert hits[0].persona.persona_id == "i03-p0" and hits[0].evidence[0].text == "snippet i03 0"


def test_delete_removes_items_from_text_and_vectors(tmp_path, docs):
    backend = EmbeddedBackend(tmp_path, writable=True)
    backend.upsert(docs)
    assert backend.delete(["i00", "i01", "missing"]) == 2
    reopened = EmbeddedBackend(tmp_path)
    assert "i00" not in reopened.item_ids() and len(reopened) == 28
    hits = reopened.search(query(docs[0].vectors[0], k=5, mode="hybrid", text="soft fabric"))
    assert {"i00", "i01"}.isdisjoint(h.item_id for h in hits)


def test_filters_exclusions_and_candidates(tmp_path, docs):
    backend = EmbeddedBackend(tmp_path, writable=True)
    backend.upsert(docs)
    v = docs[4].vectors[1]
    tops = backend.search(query(v, k=10, filters={"categories": ("Tops",)}))
    assert tops and all(int(h.item_id[1:]) % 2 == 0 for h in tops)
    assert tops[0].item_id == "i04"
    unseen = backend.search(query(v, k=10, exclude_ids=frozenset({"i04"})))
    assert "i04" not in {h.item_id for h in unseen}
    rerank = backend.search(query(v, k=3, candidate_ids=("i07", "i04", "i09", "nope")))
    assert [h.item_id for h in rerank][0] == "i04" and len(rerank) == 3
    none = backend.search(query(v, k=3, filters={"attributes.colour": ("blue",)}))
    assert none == []


def test_hybrid_adds_bm25_on_persona_text(tmp_path):
    rng = np.random.default_rng(3)
    backend = EmbeddedBackend(tmp_path, writable=True)
    backend.upsert([doc(f"i{n}", rng.normal(size=(2, DIM))) for n in range(10)] + [doc("denim", rng.normal(size=(2, DIM)), words=("stretchy", "denim"))])
    v = unit(rng.normal(size=(1, DIM)))[0]
    plain = backend.search(query(v, k=3))
    hybrid = backend.search(query(v, k=3, mode="hybrid", text="Stretchy DENIM jeans", text_weight=0.9, vector_weight=0.1))
    assert hybrid[0].item_id == "denim" and hybrid[0].scores["bm25"] > 0
    assert set(hybrid[0].scores) == {"cosine", "bm25", "fused"}
    assert "denim" not in [h.item_id for h in plain] or plain[0].item_id != "denim"
    rrf = backend.search(query(v, k=3, mode="hybrid", text="stretchy", fusion="rrf", text_weight=5))
    assert rrf[0].item_id == "denim"


def test_crash_between_store_commit_and_vector_save_is_detected_and_repaired(tmp_path, docs):
    backend = EmbeddedBackend(tmp_path, writable=True)
    backend.upsert(docs[:10])
    before = backend.search(query(docs[0].vectors[0], k=5, mode="exact"))
    generation = backend.meta.generation
    original_save = backend._save

    def crash(cache, gen):  # simulates a kill after the store's commit, before the cache is saved
        raise KeyboardInterrupt

    backend._save = crash
    with pytest.raises(KeyboardInterrupt):
        backend.upsert(docs[10:])
    backend._save = original_save
    assert not cache_dir(tmp_path, generation + 1).exists()
    with pytest.raises(IndexStateError, match=r"p4r index repair --index"):
        EmbeddedBackend(tmp_path).search(query(docs[0].vectors[0]))
    assert EmbeddedBackend(tmp_path, writable=True).repair() == 30 * 3
    repaired = EmbeddedBackend(tmp_path)
    assert len(repaired) == 30
    after = repaired.search(query(docs[0].vectors[0], k=5, mode="exact", candidate_ids=tuple(d.item_id for d in docs[:10])))
    assert [h.item_id for h in after] == [h.item_id for h in before]


def test_crash_before_store_commit_leaves_the_old_state(tmp_path, docs):
    backend = EmbeddedBackend(tmp_path, writable=True)
    backend.upsert(docs[:10])

    def broken():
        yield docs[10]
        raise RuntimeError("encoder died")

    with pytest.raises(RuntimeError):
        backend.upsert(broken())
    reopened = EmbeddedBackend(tmp_path)
    assert len(reopened) == 10 and len(reopened.vectors()) == 30


def test_incompatible_documents_are_refused_before_writing(tmp_path, docs):
    backend = EmbeddedBackend(tmp_path, writable=True)
    backend.upsert(docs[:2])
    with pytest.raises(ConfigError, match="encoded with 'other'"):
        backend.upsert([doc("x", np.ones((1, DIM)), model="other")])
    with pytest.raises(ConfigError, match="4-d vectors; this index holds 8-d"):
        backend.upsert([doc("y", np.ones((1, 4)))])
    with pytest.raises(ConfigError, match="dimensions"):
        backend.search(query(np.ones(4)))
    assert len(EmbeddedBackend(tmp_path)) == 2


def test_missing_index_and_read_only_writes(tmp_path):
    with pytest.raises(NotFoundError, match="no such index directory"):
        EmbeddedBackend(tmp_path / "nothing")
    with pytest.raises(NotFoundError, match="no such index directory"):
        EmbeddedBackend(tmp_path / "nothing", writable=True, create=False)
    assert not (tmp_path / "nothing").exists()
    EmbeddedBackend(tmp_path, writable=True)
    with pytest.raises(ConfigError, match="read-only"):
        EmbeddedBackend(tmp_path).delete(["a"])
    assert EmbeddedBackend(tmp_path).search(query(np.ones(DIM))) == []


def test_user_text_with_query_syntax_stays_terms(tmp_path, docs):
    backend = EmbeddedBackend(tmp_path, writable=True)
    backend.upsert(docs)
    nasty = 'soft AND (fabric OR "x") item_id:i01 NOT * ~2 ^9 {"script": "1"} \\ /regex/'
    hits = backend.search(query(docs[1].vectors[0], k=5, mode="hybrid", text=nasty))
    assert len(hits) == 5


def test_rank_of_equals_the_position_in_an_exact_search(tmp_path):
    """`rank_of` (one scan, what explain reports) against the item's place in the exact search's hits, with
    exclusions and with ties (items sharing a vector are ordered by id, as the search orders them)."""
    rng = np.random.default_rng(7)
    backend = EmbeddedBackend(tmp_path / "idx", writable=True)
    shared = unit(rng.normal(size=(2, 8)))
    docs = [doc(f"i{n:02d}", shared if n % 7 == 0 else unit(rng.normal(size=(int(rng.integers(1, 4)), 8))))
            for n in range(40)]
    backend.upsert(docs)
    for trial in range(5):
        profile = rng.normal(size=8).astype(np.float32)
        exclude = frozenset(f"i{n:02d}" for n in rng.choice(40, 6, replace=False))
        hits = backend.search(PersonaQuery(profile, k=40, num_candidates=40, mode="exact", exclude_ids=exclude))
        expected = {h.item_id: n for n, h in enumerate(hits, start=1)}
        for item in (d.item_id for d in docs):
            assert backend.rank_of(profile, item, exclude) == expected.get(item), (trial, item)
    with pytest.raises(ConfigError, match="this index holds 8"):
        backend.rank_of(np.ones(5, np.float32), "i01")
