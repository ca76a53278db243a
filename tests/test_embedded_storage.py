"""How the embedded engine keeps vectors on disk: one float32 copy, a write-ahead file, repair from it."""

from __future__ import annotations

import numpy as np
import pytest
from test_embedded import doc

from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.backends.embedded.vectors import HnswConfig, cache_dir, pending_files
from p4r_search.errors import IndexStateError
from p4r_search.query import PersonaQuery

DIM = 8


@pytest.fixture
def docs():
    rng = np.random.default_rng(11)
    return [doc(f"i{n:02d}", rng.normal(size=(3, DIM))) for n in range(20)]


def crash_after_store_commit(backend: EmbeddedBackend, docs) -> None:
    def crash(cache, gen):  # a kill after the store's commit, before the vector cache is saved
        raise KeyboardInterrupt

    backend._save = crash
    with pytest.raises(KeyboardInterrupt):
        backend.upsert(docs)


@pytest.mark.parametrize("dtype", ["f32", "i8"])
def test_vectors_and_payloads_come_back_exactly_after_reopening(tmp_path, docs, dtype):
    EmbeddedBackend(tmp_path, writable=True, hnsw=HnswConfig(dtype=dtype)).upsert(docs)
    reopened = EmbeddedBackend(tmp_path, hnsw=HnswConfig(dtype=dtype))
    stored = reopened.persona_vectors([d.item_id for d in docs])
    for d in docs:
        assert np.array_equal(stored[d.item_id], d.vectors)  # exact float32, even behind an i8 graph
        assert [p.persona_id for p in reopened.personas(d.item_id)] == [p.persona_id for p in d.personas]
    hit = reopened.search(PersonaQuery(vector=docs[4].vectors[1], k=1, mode="exact"))[0]
    assert hit.item_id == "i04" and hit.persona.persona_id == "i04-p1"
    assert [e.text for e in hit.evidence] == ["snippet i04 1"]


def test_the_store_keeps_no_vectors_and_a_write_leaves_no_pending_file(tmp_path, docs):
    backend = EmbeddedBackend(tmp_path, writable=True)
    backend.upsert(docs)
    assert pending_files(tmp_path) == []
    vector_bytes = sum(f.stat().st_size for f in cache_dir(tmp_path, backend.meta.generation).iterdir())
    assert vector_bytes > 60 * DIM * 4  # the vectors are in the cache folder ...
    store = tmp_path / "store"
    raw = np.concatenate([d.vectors for d in docs]).astype("<f4").tobytes()
    assert all(raw[:16] not in f.read_bytes() for f in store.rglob("*") if f.is_file())  # ... not in the store


def test_repair_after_a_crash_uses_the_pending_rows_and_then_drops_them(tmp_path, docs):
    backend = EmbeddedBackend(tmp_path, writable=True)
    backend.upsert(docs[:10])
    crash_after_store_commit(backend, docs[10:])
    assert [gen for _, gen in pending_files(tmp_path)] == [backend.meta.generation]
    assert EmbeddedBackend(tmp_path, writable=True).repair() == 20 * 3
    assert pending_files(tmp_path) == []
    repaired = EmbeddedBackend(tmp_path)
    assert np.array_equal(repaired.persona_vectors(["i15"])["i15"], docs[15].vectors)


def test_lost_vectors_are_reported_not_invented(tmp_path, docs):
    backend = EmbeddedBackend(tmp_path, writable=True)
    backend.upsert(docs[:10])
    crash_after_store_commit(backend, docs[10:])
    for path, _ in pending_files(tmp_path):
        path.unlink()  # the write-ahead file is gone too: nothing holds the new rows' vectors
    with pytest.raises(IndexStateError, match="vectors of 30 stored rows are lost"):
        EmbeddedBackend(tmp_path, writable=True).repair()


def test_a_failed_store_commit_leaves_the_old_state_and_the_next_write_works(tmp_path, docs, monkeypatch):
    backend = EmbeddedBackend(tmp_path, writable=True)
    backend.upsert(docs[:10])
    saved = {p.name for p in tmp_path.iterdir()}

    def broken_commit(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(backend.store, "commit", broken_commit)
    with pytest.raises(OSError):
        backend.upsert(docs[10:])
    assert len(EmbeddedBackend(tmp_path)) == 10
    assert saved <= {p.name for p in tmp_path.iterdir()}
    monkeypatch.undo()
    backend.upsert(docs[10:])  # the next write takes the same generation and row keys: no stale rows
    reopened = EmbeddedBackend(tmp_path)
    assert len(reopened) == 20 and pending_files(tmp_path) == []
    assert np.array_equal(reopened.persona_vectors(["i12"])["i12"], docs[12].vectors)


def test_an_index_of_an_older_format_is_refused_with_what_to_do(tmp_path, docs):
    from p4r_search.backends.embedded.store import Meta

    backend = EmbeddedBackend(tmp_path, writable=True)
    backend.upsert(docs)
    backend.store.commit(Meta(format=1, generation=backend.store.meta().generation), [], [])  # as an older version wrote
    with pytest.raises(IndexStateError, match=r"index format 1 is not 2 .*delete .* and run `p4r index build` again"):
        EmbeddedBackend(tmp_path).search(PersonaQuery(vector=docs[0].vectors[0], k=1))
