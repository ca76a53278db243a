"""`p4r train encoder`: fine-tune the encoder on users' histories, for `--embedding-model` everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..persona_vectors import DEFAULT_EVIDENCE_PRIOR, PERSONA_VECTOR_KINDS
from ..profile import PROFILE_SOURCES
from ..training.head import POSITIVES, HeadSettings
from .app import cli
from .options import (
    FINITE_FLOAT,
    FiniteFloatRange,
    input_file,
    json_option,
    make_reader,
    model_option,
    progress_bar,
    progress_option,
    report_rejects,
    skip_invalid_option,
)


@cli.group()
def train() -> None:
    """Train models on your interactions (Persona4Rec's contrastive encoder training)."""


@train.command("encoder")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder with items.jsonl, reviews.jsonl and interactions.jsonl (as for `p4r eval loo`).")
@click.option("--personas", "personas_path", type=input_file, required=True, help="Personas JSONL of these items.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="New folder for the trained sentence-transformers model.")
@model_option
@click.option("--profile-source", type=click.Choice(PROFILE_SOURCES), default="items", show_default=True,
              help="What a history interaction is in the training anchors; use the same when recommending.")
@click.option("--persona-vector", type=click.Choice(PERSONA_VECTOR_KINDS), default="evidence", show_default=True,
              help="What a persona vector is in the positives; use the same for `p4r index build`.")
@click.option("--evidence-prior", type=FiniteFloatRange(min=0), default=DEFAULT_EVIDENCE_PRIOR, show_default=True,
              help="As for `p4r index build`: pseudo-reviews at the item centroid in each persona's evidence.")
@click.option("--last-n", type=int, default=10, show_default=True, help="Interactions in an anchor profile.")
@click.option("--gamma", type=FINITE_FLOAT, default=0.65, show_default=True, help="Recency decay of an anchor profile.")
@click.option("--split", type=click.Choice(["loo", "none"]), default="loo", show_default=True,
              help="loo: hold out each user's validation and test interactions, as `p4r eval loo` does; "
                   "none: train on everything.")
@click.option("--min-rating", type=FINITE_FLOAT, default=3.0, show_default=True, help="Positives for the loo split.")
@click.option("--hard-negatives", "negatives", type=click.Choice(["generator", "none"]), default="generator",
              show_default=True, help="generator: the top 20 of the strongest of popularity, ALS, EASE, RP3beta and item-kNN (tuned on validation) for each user.")
@click.option("--positive", type=click.Choice(POSITIVES), default="persona", show_default=True,
              help="persona: the persona the user's review supports (the paper); item: the item's best persona.")
@click.option("--epochs", type=int, default=HeadSettings.epochs, show_default=True)
@click.option("--max-steps", type=int, default=HeadSettings.max_steps, show_default=True,
              help="Optimiser steps at most, whatever the epochs (0: no cap).")
@click.option("--batch-size", type=int, default=HeadSettings.batch_size, show_default=True)
@click.option("--learning-rate", type=FINITE_FLOAT, default=HeadSettings.learning_rate, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the example order and the CF fit.")
@click.option("--cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite cache of base-model vectors (e.g. an eval's work/vectors.sqlite): reruns encode nothing.")
@skip_invalid_option
@progress_option
@json_option
def encoder(data_dir, personas_path, out, model, profile_source, persona_vector, evidence_prior, last_n, gamma, split,
            min_rating, negatives, positive, epochs, max_steps, batch_size, learning_rate, seed, cache, skip_invalid,
            progress, as_json):
    """Train a head on top of the encoder so that a user's profile lies next to the persona of the item they
    choose next (anchors: profiles built as at serving time; positives: personas; negatives: in-batch and the
    candidate generator's top items). Writes a sentence-transformers folder with a model card."""
    from ..evaluation.encoders import train_encoder
    from ..profile import ProfileConfig
    from ..training import TrainSettings

    reader = make_reader(skip_invalid, None, out.with_name(out.name + ".rejects.jsonl"))
    settings = TrainSettings(ProfileConfig(last_n, gamma, source=profile_source), persona_vector,
                             HeadSettings(epochs=epochs, max_steps=max_steps or None, batch_size=batch_size,
                                          learning_rate=learning_rate, seed=seed, positive=positive),
                             evidence_prior)
    _, head, card = train_encoder(data_dir, personas_path, out, settings=settings, base_model=model, cache=cache,
                                  reader=reader, progress=progress_bar(progress, "epochs"), min_rating=min_rating,
                                  split=split, negatives=negatives)
    report_rejects(reader)
    summary = {"model": str(out), "examples": card["examples"], "steps": head.steps, "first_loss": head.losses[0],
               "last_loss": head.losses[-1], "seconds": card["seconds"]}
    click.echo(json.dumps(summary) if as_json else
               f"trained on {card['examples']} examples ({head.steps} steps) in {card['seconds']} s: loss "
               f"{head.losses[0]:.4f} → "
               f"{head.losses[-1]:.4f}; saved to {out} (use --embedding-model {out})")
