"""Training the encoder (`p4r_search.training`, `p4r train encoder`) on real users' reviews.

Data: the first 40 items of the Amazon Digital Music prefix (real users and reviews, read from ../shared),
the real packaged encoder, the real extractive personas, a real sentence-transformers save and load.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli, write_jsonl
from eval_data import digital_music_slice, needs_digital_music

from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.encoder import Encoder
from p4r_search.evaluation.data import load_eval_data
from p4r_search.evaluation.embedding_cache import CachedEncoder
from p4r_search.evaluation.encoders import split_inputs
from p4r_search.evaluation.split import leave_one_out, training_reviews
from p4r_search.evaluation.vectors import build_personas, training_catalog
from p4r_search.io import LineReader
from p4r_search.persona_vectors import PersonaVectorRecipe, combine
from p4r_search.profile import ProfileConfig
from p4r_search.recommend import Recommender, UserInput
from p4r_search.training import (
    HeadSettings,
    apply_head,
    build_training_set,
    load_head,
    mean_loss,
    ranking_accuracy,
    read_card,
    save_encoder,
    train_head,
)
from p4r_search.training.forward import Forward

pytestmark = needs_digital_music


@pytest.fixture(scope="module")
def music(tmp_path_factory, encoder):
    """The slice, its leave-one-out split, extractive personas of the training reviews, a vector cache."""
    folder = tmp_path_factory.mktemp("music")
    data = load_eval_data(digital_music_slice(folder, items=40), LineReader())
    split = leave_one_out(data.interactions)
    catalog = training_catalog(data.items, training_reviews(data.reviews, split.held_out))
    cache = CachedEncoder(encoder, folder / "vectors.sqlite")
    cache.encode(sorted({r.text for rs in catalog.reviews.values() for r in rs}))
    personas = build_personas(catalog, "extractive", cache, folder / "personas.jsonl", seed=0)
    return {"folder": folder, "data": data, "split": split, "personas": personas, "cache": cache}


def training_set(music, source="both", kind="evidence", prior=0.0):
    inputs, _ = split_inputs(music["data"], music["personas"], negatives="generator")
    texts = list(dict.fromkeys([*(p.embedding_text for r in inputs.personas.values() for p in r.personas),
                                *(r.text for r in inputs.reviews)]))
    vectors = dict(zip(texts, music["cache"].encode(texts)))
    data = build_training_set(inputs.sequences, inputs.personas, inputs.reviews, kind=kind,
                              profile=ProfileConfig(source=source), hard_negatives=inputs.hard_negatives,
                              text_vectors=vectors, prior=prior)
    return inputs, data, np.stack([vectors[t] for t in data.texts])


def test_training_sees_no_validation_or_test_interaction_nor_held_out_review(music):
    split = music["split"]
    inputs, info = split_inputs(music["data"], music["personas"])
    assert split.test and info["split"]["users_held_out"] == len(split.test)
    for case in split.validation:
        assert list(inputs.sequences[case.user_id]) == [i for i in case.history if i in inputs.personas]
    held_items = {(u, i) for u, i in split.held_out}
    for user, items in inputs.sequences.items():
        assert not {(user, i) for i in items} & held_items, user
    held_reviews = {r.review_id for r in music["data"].reviews if (r.user_id, r.item_id) in split.held_out}
    assert held_reviews and not held_reviews & {r.review_id for r in inputs.reviews}
    _, data, _ = training_set(music)
    assert len(data) > 50
    targets = {(u, data.personas.item_ids[t]) for u, t in zip(data.users, data.targets)}
    assert not targets & held_items
    held_texts = {r.text for r in music["data"].reviews if (r.user_id, r.item_id) in split.held_out}
    trained_texts = {r.text for r in inputs.reviews}
    assert not {t for t in data.texts if t in held_texts and t not in trained_texts}


def test_the_users_own_review_never_makes_its_positive(music):
    inputs, data, _ = training_set(music)
    own = {(r.user_id, r.item_id): r.text for r in inputs.reviews}
    row = {t: n for n, t in enumerate(data.texts)}
    checked = 0
    for n, (user, target) in enumerate(zip(data.users, data.targets)):
        text = own.get((user, data.personas.item_ids[target]))
        evidence = set(data.positive_evidence[n].indices)
        assert row[text] not in evidence
        checked += bool(evidence)
    assert checked > 20


@pytest.mark.parametrize("source,kind,prior", [("items", "text", 0.0), ("reviews", "evidence", 0.0),
                                               ("both", "blend", 0.0), ("items", "evidence", 3.0)])
def test_anchors_and_positives_are_built_as_serving_builds_them(music, source, kind, prior):
    """The trainer's torch vectors equal the numpy functions that serving and the evaluation use."""
    import torch

    from p4r_search.profile import history_profile, interaction_vector, item_vector

    _, data, base = training_set(music, source, kind, prior)
    weight = np.random.default_rng(1).normal(scale=0.05, size=(base.shape[1],) * 2).astype(np.float32)
    with torch.no_grad():
        found = Forward(data, base).vectors(np.arange(len(data)), torch.from_numpy(weight))
    anchors, positives = found.anchors.numpy(), found.positives.numpy()
    embedded = apply_head(base, weight)
    rows_of = lambda matrix: [matrix[n].indices.astype(np.int64) for n in range(matrix.shape[0])]
    recipe = PersonaVectorRecipe(data.texts, data.personas.text_rows, rows_of(data.personas.evidence),
                                 rows_of(data.personas.item_evidence))
    personas, _ = combine(kind, recipe, embedded, prior)
    items = [item_vector(personas[[p for p in row if p >= 0]]) for row in data.personas.item_personas]
    config = ProfileConfig(last_n=10, gamma=0.65, source=source)
    for n in range(0, len(data), 7):
        row = data.anchors[n]
        order = np.argsort(row.data)  # oldest first: the smallest recency weight
        vectors = [interaction_vector(items[data.interaction_items[m]],
                                      embedded[data.interaction_reviews[m]] if data.interaction_reviews[m] >= 0 else None,
                                      source) for m in row.indices[order]]
        assert anchors[n] == pytest.approx(history_profile(vectors, config), abs=1e-5)
        one = PersonaVectorRecipe(data.texts, data.positive_text[n:n + 1], [data.positive_evidence[n].indices],
                                  [data.positive_item[n].indices])
        assert positives[n] == pytest.approx(combine(kind, one, embedded, prior)[0][0], abs=1e-5)


def test_training_lowers_the_loss_and_moves_positives_ahead_of_negatives(music):
    _, data, base = training_set(music)
    head = train_head(data, base, HeadSettings(epochs=4, batch_size=32, learning_rate=3e-3))
    zero = np.zeros_like(head.weight)
    assert head.losses[-1] < head.losses[0]
    assert mean_loss(data, base, head.weight) < mean_loss(data, base, zero)
    assert ranking_accuracy(data, base, head.weight) > ranking_accuracy(data, base, zero)


def test_training_repeats_exactly_with_a_seed(music):
    _, data, base = training_set(music)
    settings = HeadSettings(epochs=2, batch_size=32, seed=5)
    first, again = train_head(data, base, settings), train_head(data, base, settings)
    assert np.array_equal(first.weight, again.weight) and first.losses == again.losses
    other = train_head(data, base, HeadSettings(epochs=2, batch_size=32, seed=6))
    assert not np.array_equal(first.weight, other.weight)
    capped = train_head(data, base, HeadSettings(epochs=5, max_steps=3, batch_size=32, seed=5))
    assert capped.steps == 3 and len(capped.losses) == 1 and first.steps > 3


def test_the_saved_model_embeds_as_the_head_computes(music, tmp_path, encoder):
    weight = np.random.default_rng(0).normal(scale=0.05, size=(encoder.dim, encoder.dim)).astype(np.float32)
    folder = save_encoder(encoder.model_name, weight, tmp_path / "model", {"base_model": encoder.model_name})
    texts = [r.text for r in music["data"].reviews[:5]] + ["a short one"]
    assert Encoder(str(folder)).encode(texts) == pytest.approx(apply_head(encoder.encode(texts), weight), abs=1e-5)
    assert (folder / "p4r_training.json").is_file() and (folder / "README.md").is_file()
    with pytest.raises(Exception, match="not empty"):
        save_encoder(encoder.model_name, weight, folder, {})


def test_train_encoder_cli_then_index_and_recommend_with_it(music, tmp_path):
    """The whole path: train, index with the trained model and evidence vectors, recommend; and the serving
    profile of a training example equals the anchor the trainer built for it."""
    import torch

    folder = music["folder"] / "slice"
    model = tmp_path / "model"
    personas = music["folder"] / "personas.jsonl"
    result = run_cli("train", "encoder", "--data", folder, "--personas", personas, "--out", model, "--epochs", "2",
                     "--profile-source", "both", "--cache", music["folder"] / "vectors.sqlite", "--no-progress")
    assert "trained on" in result.output and (model / "modules.json").is_file()
    card = read_card(model)
    assert card["split"]["kind"] == "loo" and card["profile"]["source"] == "both" and card["examples"] > 50
    assert card["data_hash"].startswith("sha256:") and len(card["losses"]) == 2

    split = music["split"]
    kept = [r.model_dump(mode="json") for r in training_reviews(music["data"].reviews, split.held_out)]
    reviews = write_jsonl(tmp_path / "train-reviews.jsonl", kept)
    index = tmp_path / "index"
    run_cli("index", "build", "--personas", personas, "--items", folder / "items.jsonl", "--index", index,
            "--embedding-model", model, "--persona-vector", "evidence", "--reviews", reviews, "--no-progress")
    assert EmbeddedBackend(index).meta.persona_vector == "evidence"
    case = split.validation[0]
    out = run_cli("recommend", "--index", index, "--embedding-model", model, "--user", case.user_id,
                  "--interactions", folder / "interactions.jsonl", "--profile-source", "both", "--reviews", reviews,
                  "-k", "3", "--json")
    assert json.loads(out.output)["hits"]
    refused = run_cli("recommend", "--index", index, "--user", case.user_id, "--interactions",
                      folder / "interactions.jsonl", "--profile-source", "both", "--reviews", reviews,
                      "--embedding-model", "packaged:all-MiniLM-L6-v2", expect=64)
    assert "was built with model" in refused.output  # reviews embedded by another model than the index's

    inputs, data, base = training_set(music, "both", "evidence", prior=EmbeddedBackend(index).meta.evidence_prior)
    with torch.no_grad():
        anchors = Forward(data, base).vectors(np.arange(len(data)), torch.from_numpy(load_head(model))).anchors.numpy()
    recommender = Recommender(EmbeddedBackend(index), encoder=Encoder(str(model)), profile=ProfileConfig(source="both"))
    own = {(r.user_id, r.item_id): r.text for r in inputs.reviews}
    checked = 0
    for n, user in enumerate(data.users):
        sequence = list(inputs.sequences[user])
        history = tuple(sequence[:sequence.index(data.personas.item_ids[data.targets[n]])])
        if len(history) < 2 or n % 5:
            continue
        served = recommender.profile(UserInput(history=history, reviews={i: own[(user, i)] for i in history
                                                                          if (user, i) in own}))
        assert served == pytest.approx(anchors[n], abs=1e-4)
        checked += 1
    assert checked >= 3
