"""`p4r index build/attach --personas FOLDER`: the shards of `p4r pipeline run -o FOLDER`, read without Ray.

The shards are written with the pipeline's own writer (`write_shard`) from real personas (`p4r personas
generate`, extractive) and real vectors (the packaged encoder, through `build_documents`, as the pipeline's
workers make them); the indexes are real embedded indexes, and the cluster is the loopback stand-in.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest
from conftest import read_jsonl, run_cli, write_jsonl
from loopback_cluster import LoopbackCluster

from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.distributed.files import Location
from p4r_search.distributed.shards import ShardLine, StoredVectors, write_shard
from p4r_search.documents import build_documents
from p4r_search.encoder import Encoder
from p4r_search.models import ItemPersonas

ITEMS = 4
REVIEWS_PER_ITEM = 12


@pytest.fixture(scope="module")
def catalog(subset, tmp_path_factory) -> dict:
    """A few items of the example subset and some of their reviews: a small, quick slice of examples/."""
    folder = tmp_path_factory.mktemp("shard-catalog")
    items = read_jsonl(subset["items"])[:ITEMS]
    kept = {i["item_id"]: 0 for i in items}
    reviews = []
    for review in read_jsonl(subset["reviews"]):
        if kept.get(review["item_id"], REVIEWS_PER_ITEM) < REVIEWS_PER_ITEM:
            kept[review["item_id"]] += 1
            reviews.append(review)
    return {"items": write_jsonl(folder / "items.jsonl", items), "reviews": write_jsonl(folder / "reviews.jsonl", reviews)}


@pytest.fixture(scope="module")
def personas(catalog, tmp_path_factory):
    """Their personas, through `p4r personas generate` (the real extractive generator)."""
    out = tmp_path_factory.mktemp("shard-personas") / "personas.jsonl"
    run_cli("personas", "generate", "--items", catalog["items"], "--reviews", catalog["reviews"], "-o", out,
            "--no-progress")
    return out


@pytest.fixture(scope="module")
def records(personas) -> list[ItemPersonas]:
    return [ItemPersonas.model_validate(line) for line in read_jsonl(personas)]


@pytest.fixture(scope="module")
def review_texts(catalog) -> dict[str, str]:
    return {r["review_id"]: r["text"] for r in read_jsonl(catalog["reviews"])}


def shard_lines(records, encoder, review_texts, kind: str) -> list[ShardLine]:
    """What the pipeline's workers write: each personas line with its vectors and how they were made."""
    docs = build_documents(records, encoder, persona_vector=kind, review_texts=review_texts, evidence_prior=3.0)
    return [ShardLine(**record.model_dump(), vectors=StoredVectors.of(
                doc.vectors, model=doc.encoder_model, kind=doc.persona_vector, evidence_prior=doc.evidence_prior,
                text_fallbacks=doc.text_fallbacks))
            for record, doc in zip(records, docs)]


@pytest.fixture(scope="module")
def evidence_lines(records, encoder, review_texts) -> list[ShardLine]:
    return shard_lines(records, encoder, review_texts, "evidence")


def shard_folder(folder, lines, fmt: str = "jsonl", run_id: str = "20250101T000000abcd"):
    """A pipeline output folder: the shards, and the run's other files, which index build must not read."""
    write_shard(Location.parse(str(folder)), run_id, lines, fmt)
    for name in ("report.json", "failed.jsonl", "rejects.jsonl"):
        (folder / name).write_text("not a personas line\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def classic_index(catalog, personas, tmp_path_factory):
    """The same personas indexed the classic way: the personas file, encoded with --reviews."""
    index = tmp_path_factory.mktemp("classic") / "idx"
    run_cli("index", "build", "--personas", personas, "--items", catalog["items"], "--index", index,
            "--persona-vector", "evidence", "--reviews", catalog["reviews"], "--no-progress")
    return index


@contextmanager
def model_never_loads(monkeypatch):
    """Inside: loading the sentence-transformers model fails. Encoder loads it on the first encode() or dim,
    so a command run inside provably encoded nothing (the CLI runs in-process, through CliRunner, so it sees
    the patch). Nothing else is changed: the command reads the real files and writes a real index."""

    def refuse(self):
        raise AssertionError("the encoder model was loaded: something was encoded")

    with monkeypatch.context() as patch:
        patch.setattr(Encoder, "_model", property(refuse))
        yield


def search(index, text: str = "a flattering dress for a petite woman") -> list[tuple[str, float, str]]:
    hits = json.loads(run_cli("recommend", "--index", index, "--text", text, "--json").stdout)["hits"]
    return [(h["item_id"], round(h["score"], 5), h["persona"]["persona_id"]) for h in hits]


# -- (a) + (b): stored vectors are indexed as they are, with no --reviews, and nothing is encoded ------------
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_shard_folder_indexes_its_stored_vectors_without_encoding(fmt, catalog, records, evidence_lines,
                                                                    classic_index, tmp_path, monkeypatch):
    folder = shard_folder(tmp_path / "out", evidence_lines, fmt)
    index = tmp_path / "idx"
    with model_never_loads(monkeypatch):  # auto and no --reviews: the stored evidence vectors
        result = run_cli("index", "build", "--personas", folder, "--items", catalog["items"], "--index", index,
                         "--no-progress")

    assert "note: indexing the stored evidence/all-MiniLM-L6-v2 (evidence prior 3) vectors; encoding nothing" \
        in result.stderr
    assert f"{ITEMS} item(s) indexed into {index} (evidence persona vectors, as stored)" in result.stdout
    assert "loading encoder" not in result.stderr and "--reviews" not in result.stderr
    built, classic = EmbeddedBackend(index), EmbeddedBackend(classic_index)
    ids = [r.item_id for r in records]
    assert sorted(built.item_ids()) == sorted(classic.item_ids()) == sorted(ids)
    for key in ("model", "dim", "persona_vector", "evidence_prior"):
        assert getattr(built.meta, key) == getattr(classic.meta, key), key
    ours, theirs = built.persona_vectors(ids), classic.persona_vectors(ids)
    for item_id in ids:
        np.testing.assert_allclose(ours[item_id], theirs[item_id], atol=1e-6)
        assert built.item_card(item_id) == classic.item_card(item_id)  # titles from --items, personas, evidence
    assert search(index) == search(classic_index)


def test_json_summary_says_the_vectors_were_stored(personas, evidence_lines, tmp_path, monkeypatch):
    folder = shard_folder(tmp_path / "out", evidence_lines)
    with model_never_loads(monkeypatch):
        result = run_cli("index", "build", "--personas", folder, "--index", tmp_path / "idx", "--no-progress",
                         "--json")
        with pytest.raises(AssertionError, match="the encoder model was loaded"):  # the guard does catch encoding
            run_cli("index", "build", "--personas", personas, "--index", tmp_path / "file-idx", "--no-progress",
                    "--json")
    summary = json.loads(result.stdout)
    assert summary["stored_vectors"] is True and summary["items"] == ITEMS
    assert summary["persona_vector"] == "evidence" and summary["text_fallbacks"] == 0


# -- (c) vectors that are not what was asked for are made again, and the CLI says why ------------------------
def test_text_vectors_are_encoded_again_when_evidence_is_asked(catalog, records, encoder, review_texts,
                                                               classic_index, tmp_path):
    folder = shard_folder(tmp_path / "out", shard_lines(records, encoder, review_texts, "text"))
    index = tmp_path / "idx"
    result = run_cli("index", "build", "--personas", folder, "--items", catalog["items"], "--index", index,
                     "--persona-vector", "evidence", "--reviews", catalog["reviews"], "--no-progress")
    assert ("note: stored vectors are text/all-MiniLM-L6-v2; asked for evidence/all-MiniLM-L6-v2 "
            "(evidence prior 3): encoding again") in result.stderr
    assert "(evidence persona vectors)" in result.stdout
    ids = [r.item_id for r in records]
    ours, theirs = EmbeddedBackend(index).persona_vectors(ids), EmbeddedBackend(classic_index).persona_vectors(ids)
    for item_id in ids:
        np.testing.assert_allclose(ours[item_id], theirs[item_id], atol=1e-5)

    auto = run_cli("index", "build", "--personas", folder, "--index", tmp_path / "auto", "--reviews",
                   catalog["reviews"], "--no-progress")  # auto with --reviews: evidence, as for a file
    assert "stored vectors are text/all-MiniLM-L6-v2; asked for evidence/" in auto.stderr
    assert EmbeddedBackend(tmp_path / "auto").meta.persona_vector == "evidence"


def test_auto_takes_stored_text_vectors_without_reviews(records, encoder, review_texts, tmp_path, monkeypatch):
    lines = shard_lines(records, encoder, review_texts, "text")
    folder = shard_folder(tmp_path / "out", lines)
    with model_never_loads(monkeypatch):
        result = run_cli("index", "build", "--personas", folder, "--index", tmp_path / "idx", "--no-progress")
    assert "indexing the stored text/all-MiniLM-L6-v2 vectors; encoding nothing" in result.stderr
    assert "give --reviews" not in result.stderr  # not the note of a personas file indexed by auto
    built = EmbeddedBackend(tmp_path / "idx")
    assert built.meta.persona_vector == "text"
    for line in lines:
        np.testing.assert_array_equal(built.persona_vectors([line.item_id])[line.item_id], line.vectors.array())


def test_another_prior_or_missing_vectors_are_encoded_again(catalog, records, evidence_lines, tmp_path):
    folder = shard_folder(tmp_path / "out", evidence_lines)
    prior = run_cli("index", "build", "--personas", folder, "--index", tmp_path / "idx", "--persona-vector",
                    "evidence", "--evidence-prior", "0", "--no-progress", expect=64)  # encoding needs the reviews
    assert ("note: stored vectors are evidence/all-MiniLM-L6-v2 (evidence prior 3); asked for "
            "evidence/all-MiniLM-L6-v2 (evidence prior 0): encoding again") in prior.stderr
    assert "--persona-vector evidence needs --reviews" in prior.stderr

    partial = shard_folder(tmp_path / "partial", [*evidence_lines[:-1], records[-1]])  # one line without vectors
    result = run_cli("index", "build", "--personas", partial, "--index", tmp_path / "partial-idx", "--reviews",
                     catalog["reviews"], "--no-progress")
    assert (f"note: 1 of {ITEMS} item(s) have no stored vectors; asked for evidence/all-MiniLM-L6-v2 "
            "(evidence prior 3): encoding again") in result.stderr
    assert len(EmbeddedBackend(tmp_path / "partial-idx")) == ITEMS


# -- (d) a later shard's line for an item replaces an earlier one's ------------------------------------------
def test_a_later_shard_wins(evidence_lines, tmp_path, monkeypatch):
    first = evidence_lines[0]
    assert len(first.personas) > 1
    redone = ShardLine(**{**first.model_dump(exclude={"vectors"}), "personas": first.personas[:1], "input_hash": "redone"},
                       vectors=StoredVectors.of(first.vectors.array()[:1], model=first.vectors.model,
                                                kind="evidence", evidence_prior=3.0, text_fallbacks=0))
    folder = shard_folder(tmp_path / "out", evidence_lines, run_id="20250101T000000aaaa")
    shard_folder(folder, [redone], "parquet", run_id="20250102T000000aaaa")  # a later run redid one item
    with model_never_loads(monkeypatch):
        run_cli("index", "build", "--personas", folder, "--index", tmp_path / "idx", "--no-progress")
    built = EmbeddedBackend(tmp_path / "idx")
    assert len(built) == ITEMS
    assert [p.persona.persona_id for p in built.item_card(first.item_id).personas] == [first.personas[0].persona_id]
    np.testing.assert_array_equal(built.persona_vectors([first.item_id])[first.item_id], redone.vectors.array())
    other = evidence_lines[1]
    assert len(built.item_card(other.item_id).personas) == len(other.personas)


# -- (e) a bad line is named by its shard file and line number -----------------------------------------------
def test_a_bad_shard_line_is_reported_with_its_file_and_line(evidence_lines, tmp_path):
    folder = tmp_path / "out"
    name = write_shard(Location.parse(str(folder)), "20250101T000000abcd", evidence_lines[:1], "jsonl")
    with open(folder / name, "a", encoding="utf-8") as shard:
        shard.write(json.dumps({"item_id": "broken"}) + "\n")
    write_shard(Location.parse(str(folder)), "20250101T000000abcd", evidence_lines[1:], "jsonl")
    result = run_cli("index", "build", "--personas", folder, "--index", tmp_path / "idx", "--no-progress", expect=65)
    assert f"error: {folder}/{name}:2: missing required field 'personas'" in result.stderr

    rejects = tmp_path / "rejects.jsonl"
    skipped = run_cli("index", "build", "--personas", folder, "--index", tmp_path / "idx", "--no-progress",
                      "--skip-invalid", "--rejects", rejects)
    assert "warning: 1 invalid line(s) skipped" in skipped.stderr
    (reject,) = read_jsonl(rejects)
    assert (reject["file"], reject["line"]) == (f"{folder}/{name}", 2)
    assert len(EmbeddedBackend(tmp_path / "idx")) == ITEMS


def test_a_folder_without_shards_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.json").write_text("{}", encoding="utf-8")
    result = run_cli("index", "build", "--personas", tmp_path / "out", "--index", tmp_path / "idx", expect=65)
    assert "no personas-*.jsonl or personas-*.parquet shards in this folder" in result.stderr


# -- clusters: build and attach send the stored vectors ------------------------------------------------------
@pytest.mark.parametrize("command", ["build", "attach"])
def test_cluster_build_and_attach_send_the_stored_vectors(command, evidence_lines, tmp_path, monkeypatch):
    folder = shard_folder(tmp_path / "out", evidence_lines)
    existing = {"mappings": {"items": {"properties": {"title": {"type": "text"}}}},
                "docs": {"items": {line.item_id: {"title": "user title"} for line in evidence_lines}}}
    cluster = LoopbackCluster("es", **(existing if command == "attach" else {})).start()
    try:
        with model_never_loads(monkeypatch):
            run_cli("index", command, "--engine", "es", "--url", cluster.url, "--index", "items", "--personas",
                    folder, "--failed-docs", tmp_path / "failed.jsonl", "--no-progress")
    finally:
        cluster.stop()
    assert cluster.mappings["items"]["properties"]["personas"]["properties"]["vector"]["dims"] == 384
    for line in evidence_lines:
        doc = cluster.docs["items"][line.item_id]
        sent = np.array([persona["vector"] for persona in doc["personas"]], dtype=np.float32)
        np.testing.assert_allclose(sent, line.vectors.array(), atol=1e-6)
        assert doc["p4r"]["persona_vector"] == "evidence"
