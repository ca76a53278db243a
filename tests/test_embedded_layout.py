"""How the embedded engine opens its vector folder: mapped read-only, older layouts still readable, the
quantised graph rescored exactly, and many reader threads at once (issue 12)."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
from test_embedded import doc
from usearch.index import Index

from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.backends.embedded.layout import HNSW, PAYLOADS, ROWS, VECTORS, read_folder
from p4r_search.backends.embedded.vectors import HnswConfig, cache_dir
from p4r_search.query import PersonaQuery

DIM = 16


@pytest.fixture
def docs():
    rng = np.random.default_rng(3)
    return [doc(f"i{n:03d}", rng.normal(size=(1 + n % 4, DIM)), category="Dresses" if n % 3 else "Tops")
            for n in range(120)]


@pytest.fixture
def index(tmp_path, docs):
    EmbeddedBackend(tmp_path, writable=True).upsert(docs)
    return tmp_path


def ids(hits) -> list[str]:
    return [h.item_id for h in hits]


def write_old_layout(root, dim: int) -> None:
    """Rewrite the vector folder as the engine wrote it before issue 12: the float32 vectors only inside an
    f32 graph, one item id per row in rows.npz, no vectors.npy."""
    folder = next(root.glob("vectors-*"))
    rows, _ = read_folder(folder, dim, HnswConfig(), writable=True)
    graph = Index(ndim=dim, metric="cos", dtype="f32", connectivity=16, expansion_add=128, expansion_search=64)
    graph.add(rows.keys, rows.vectors)
    blob = (folder / PAYLOADS).read_bytes()
    shutil.rmtree(folder)
    folder.mkdir()
    graph.save(str(folder / HNSW))
    np.savez(folder / ROWS, keys=rows.keys, items=np.char.encode(rows.row_items(), "utf-8"),
             payload_offsets=rows.payload_offsets)
    (folder / PAYLOADS).write_bytes(blob)


def test_a_read_only_open_maps_the_vectors_and_reads_none_back_from_the_graph(index, docs, monkeypatch):
    def no_get(self, *args, **kwargs):
        raise AssertionError("read the vectors back from the graph")

    monkeypatch.setattr(Index, "get", no_get)
    cache = EmbeddedBackend(index).vectors()
    assert isinstance(cache.vectors, np.memmap) and not cache.vectors.flags.writeable
    assert np.array_equal(cache.item_vectors("i007"), docs[7].vectors)
    assert (cache_dir(index, 1) / VECTORS).exists()


def test_a_writable_open_holds_its_vectors_in_memory(index):
    cache = EmbeddedBackend(index, writable=True).vectors()
    assert not isinstance(cache.vectors, np.memmap)


def test_a_folder_of_the_older_layout_still_opens_and_answers_the_same(index, docs):
    q = PersonaQuery(vector=docs[5].vectors[0], k=10, mode="exact")
    before = EmbeddedBackend(index).search(q)
    write_old_layout(index, DIM)
    assert not (cache_dir(index, 1) / VECTORS).exists()
    old = EmbeddedBackend(index)
    assert old.search(q) == before
    assert old.search(PersonaQuery(vector=docs[5].vectors[0], k=10, filters={"categories": ["Tops"]}))
    for d in docs[:10]:
        assert np.array_equal(old.persona_vectors([d.item_id])[d.item_id], d.vectors)
        assert [p.persona_id for p in old.personas(d.item_id)] == [p.persona_id for p in d.personas]
    writer = EmbeddedBackend(index, writable=True)  # a write on top of it saves the new layout
    writer.upsert([doc("new", np.eye(DIM)[:2])])
    assert (cache_dir(index, 2) / VECTORS).exists()
    reopened = EmbeddedBackend(index)
    assert len(reopened) == 121 and np.array_equal(reopened.persona_vectors(["i009"])["i009"], docs[9].vectors)


def test_the_i8_graph_rescored_exactly_gives_the_exact_top_k(index, docs):
    backend = EmbeddedBackend(index, exact_threshold=0)  # 0: always the graph
    assert backend.vectors().hnsw.dtype.name == "I8"
    rows = len(backend.vectors())
    for d in docs[::15]:
        for vector in (d.vectors[0], d.vectors[0] + 0.3 * docs[1].vectors[0]):
            exact = backend.search(PersonaQuery(vector=vector, k=10, mode="exact"))
            knn = backend.search(PersonaQuery(vector=vector, k=10, mode="knn", num_candidates=rows))
            assert ids(knn) == ids(exact)
            assert [h.score for h in knn] == pytest.approx([h.score for h in exact], abs=1e-6)


def test_an_index_built_with_an_f32_graph_opens_with_the_default_config(tmp_path, docs):
    EmbeddedBackend(tmp_path, writable=True, hnsw=HnswConfig(dtype="f32")).upsert(docs)
    backend = EmbeddedBackend(tmp_path, exact_threshold=0)
    assert backend.vectors().hnsw.dtype.name == "F32"
    assert ids(backend.search(PersonaQuery(vector=docs[4].vectors[0], k=1)))[0] == "i004"


def test_many_reader_threads_get_the_answers_of_one(index, docs):
    backend = EmbeddedBackend(index, exact_threshold=0)  # nothing loaded yet: the threads race to load it
    queries = [PersonaQuery(vector=d.vectors[0], k=5, mode=mode, text="soft" if mode == "hybrid" else None, filters=f)
               for d in docs[:12] for mode in ("knn", "hybrid", "exact") for f in ({}, {"categories": ["Dresses"]})]
    expected = [EmbeddedBackend(index, exact_threshold=0).search(q) for q in queries]
    failures: list[str] = []

    def read(start: int) -> None:
        for n in range(3 * len(queries)):
            i = (start + n) % len(queries)
            if backend.search(queries[i]) != expected[i]:
                failures.append(f"query {i}")

    threads = [threading.Thread(target=read, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_a_reader_keeps_answering_while_a_writer_replaces_its_generation(index, docs):
    reader = EmbeddedBackend(index)
    q = PersonaQuery(vector=docs[2].vectors[0], k=3, mode="exact")
    first = reader.search(q)
    EmbeddedBackend(index, writable=True).upsert([doc("i002", np.eye(DIM)[:1])])  # the old folder is deleted
    assert not cache_dir(index, 1).exists()
    assert reader.search(q) == first  # still its mapped generation
    reader.refresh()
    assert np.array_equal(reader.persona_vectors(["i002"])["i002"], np.eye(DIM, dtype=np.float32)[:1])
