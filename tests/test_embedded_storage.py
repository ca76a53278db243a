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


# -- damaged folders (see also test_damaged_index.py) ------------------------------------------------
def saved_folder(tmp_path, docs, **hnsw):
    backend = EmbeddedBackend(tmp_path, writable=True, hnsw=HnswConfig(**hnsw))
    backend.upsert(docs)
    return cache_dir(tmp_path, backend.meta.generation)


def test_a_current_folder_without_its_vectors_file_is_refused_not_read_from_its_i8_graph(tmp_path, docs):
    folder = saved_folder(tmp_path, docs)
    (folder / "checksums.json").unlink()  # as if written before the manifest: the layout itself must tell
    (folder / "vectors.npy").unlink()
    with pytest.raises(IndexStateError, match=r"vectors-00000001/vectors.npy is damaged \(the file is missing\); "
                                              r"rebuild the index: .*p4r index build"):
        EmbeddedBackend(tmp_path).search(PersonaQuery(vector=docs[0].vectors[0], k=3, mode="exact"))


def test_an_older_folder_reads_its_vectors_from_an_f32_graph_only(tmp_path, docs):
    from test_embedded_layout import write_old_layout
    from usearch.index import Index

    from p4r_search.backends.embedded.layout import read_folder

    folder = saved_folder(tmp_path, docs)
    write_old_layout(tmp_path, DIM)  # per-row items, no vectors.npy, an f32 graph: readable
    rows, _ = read_folder(folder, DIM, HnswConfig(), writable=True)
    assert np.array_equal(rows.vectors, np.concatenate([d.vectors for d in docs]).astype(np.float32))
    graph = Index(ndim=DIM, metric="cos", dtype="i8")  # ... but with a quantised graph, not
    graph.add(rows.keys, rows.vectors)
    graph.save(str(folder / "hnsw.usearch"))
    with pytest.raises(IndexStateError, match=r"vectors.npy is damaged \(the file is missing, and the .*I8 graph"):
        EmbeddedBackend(tmp_path).vectors()


def test_vectors_that_are_not_unit_length_are_refused_not_served(tmp_path, docs, monkeypatch):
    from p4r_search.backends.embedded import checksums

    folder = saved_folder(tmp_path, docs)
    (folder / "checksums.json").unlink()  # as if written before the manifest
    np.save(folder / "vectors.npy", np.load(folder / "vectors.npy") * 111)  # well-formed, but not unit vectors
    with pytest.raises(IndexStateError, match=r"vectors.npy is damaged \(row 0 is not a unit vector"):
        EmbeddedBackend(tmp_path).vectors()  # small: every norm is checked on open
    monkeypatch.setattr(checksums, "FULL_CHECK_BYTES", 0)  # as if large: not on a read-only open, but ...
    for mode in ("exact", "knn"):  # ... no cosine outside [-1, 1] is ever served
        with pytest.raises(IndexStateError, match=r"vectors-00000001/vectors.npy is damaged \(a cosine of .*outside \[-1, 1\]"):
            EmbeddedBackend(tmp_path, exact_threshold=0 if mode == "knn" else 20_000).search(
                PersonaQuery(vector=docs[0].vectors[0], k=3, mode=mode))
    with pytest.raises(IndexStateError, match="not a unit vector"):
        EmbeddedBackend(tmp_path, writable=True).repair()


def test_a_flipped_byte_in_large_vectors_is_found_by_a_full_check(tmp_path, docs, monkeypatch):
    from conftest import run_cli

    from p4r_search.backends.embedded import checksums

    folder = saved_folder(tmp_path, docs)
    data = bytearray((folder / "vectors.npy").read_bytes())
    data[len(data) // 2] ^= 0x01  # a low mantissa bit: the cosines stay in [-1, 1]
    (folder / "vectors.npy").write_bytes(bytes(data))
    with pytest.raises(IndexStateError, match="vectors.npy is damaged .*checksum"):
        EmbeddedBackend(tmp_path).vectors()  # small: hashed on every open
    monkeypatch.setattr(checksums, "FULL_CHECK_BYTES", 0)  # as if large: a read-only open checks sizes only
    assert len(EmbeddedBackend(tmp_path).vectors()) == 60
    for open_it in (lambda: EmbeddedBackend(tmp_path, check=True).vectors(),
                    lambda: EmbeddedBackend(tmp_path, writable=True).vectors(),
                    lambda: EmbeddedBackend(tmp_path, writable=True).repair()):
        with pytest.raises(IndexStateError, match="vectors-00000001/vectors.npy is damaged .*checksum"):
            open_it()
    failed = run_cli("index", "info", "--index", tmp_path, "--check", expect=74)
    assert "vectors.npy is damaged" in failed.stderr and "Traceback" not in failed.output


def test_a_write_removes_what_killed_writes_left_behind(tmp_path, docs):
    import os
    import subprocess
    import sys

    EmbeddedBackend(tmp_path, writable=True).upsert(docs[:5])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=False,
                          text=True).stdout.strip()
    stale = [tmp_path / f".tmp-vectors-00000002-{dead}", tmp_path / f".tmp-pending-00000002.npz-{dead}"]
    stale[0].mkdir()
    (stale[0] / "vectors.npy").write_bytes(b"half")
    stale[1].write_bytes(b"half")
    alive = tmp_path / f".tmp-vectors-00000002-{os.getppid()}"  # another live writer's: left alone
    alive.mkdir()
    EmbeddedBackend(tmp_path, writable=True).upsert(docs[5:])
    assert not any(p.exists() for p in stale) and alive.exists()
    assert len(EmbeddedBackend(tmp_path)) == 20
