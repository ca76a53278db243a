"""`p4r eval …`: measure recommendation quality offline on user-level review data."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..evaluation.names import DEFAULT_GENERATORS, GENERATOR_KINDS, STRONGEST
from ..persona_vectors import DEFAULT_EVIDENCE_PRIOR
from ..personas import GENERATORS
from ..training.head import POSITIVES, HeadSettings
from .app import cli
from .options import (
    FINITE_FLOAT,
    FiniteFloatRange,
    make_reader,
    model_option,
    progress_bar,
    progress_option,
    report_rejects,
    skip_invalid_option,
)


@cli.group("eval")
def evaluate() -> None:
    """Evaluate persona recommendation offline (the Persona4Rec protocols).

    `loo` is the leave-one-out next-item task on users' rated interactions;
    `retrieval` is review-to-item retrieval on data without user ids.
    Both write results.json and results.md under --out.
    """


@evaluate.command("loo")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder with items.jsonl, reviews.jsonl and interactions.jsonl.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where results.json and results.md go.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache of personas and vectors, reused by reruns [default: OUT/work].")
@click.option("--generator", type=click.Choice(GENERATORS), default="extractive", show_default=True,
              help="Persona generator (as in `p4r personas generate`).")
@model_option
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the persona generator and CF models.")
@click.option("--min-rating", type=FINITE_FLOAT, default=3.0, show_default=True,
              help="Interactions rated at least this are positives (validation and test targets).")
@click.option("--evidence-prior", type=FiniteFloatRange(min=0), default=DEFAULT_EVIDENCE_PRIOR, show_default=True,
              help="Evidence and blend persona vectors: pseudo-reviews at the item centroid (as index build).")
@click.option("--train/--no-train", default=True, show_default=True,
              help="Also train the encoder on the training split (one head per profile source and persona vector).")
@click.option("--train-epochs", type=int, default=HeadSettings.epochs, show_default=True, help="Training epochs.")
@click.option("--train-steps", type=int, default=HeadSettings.max_steps, show_default=True,
              help="Training steps per head at most, whatever the epochs (0: no cap).")
@click.option("--train-positive", type=click.Choice(POSITIVES), default="persona", show_default=True,
              help="Training positive: the persona the user's review supports, or the item's best persona.")
@click.option("--generators", "generators", default=",".join(DEFAULT_GENERATORS), show_default=True,
              callback=lambda ctx, param, value: parse_generators(value),
              help=f"Candidate generators, comma-separated, from: {', '.join(GENERATOR_KINDS)}.")
@click.option("--learned-reranker/--no-learned-reranker", default=True, show_default=True,
              help="Also train and measure the LightGBM LambdaRank reranker over every generator's top 20.")
@click.option("--hard-negatives", default=STRONGEST, show_default=True, metavar="GENERATOR",
              help="Train the encoder with this generator's top 20 as negatives: one of --generators, or the "
                   "strongest of them on validation.")
@skip_invalid_option
@progress_option
@click.option("--json", "as_json", is_flag=True, help="Print results.json instead of the table.")
def loo(data_dir, out, work, generator, model, seed, min_rating, evidence_prior, train, train_epochs, train_steps, train_positive,
        generators, learned_reranker, hard_negatives, skip_invalid, progress, as_json):
    """Leave-one-out: per user, the last positive interaction is test, the one before it validation.

    Candidates (top 20, history excluded) come from popularity, implicit's BPR and ALS, EASE, RP3beta,
    item-kNN and SASRec, each tuned on validation; they are reranked by persona max-sim, a single-vector
    item embedding, BM25 of the user's reviews, the CF score, fusions of the generator's rank or score
    with the persona score, and a LightGBM LambdaRank model over the union of the top 20s. Persona
    max-sim, single-vector and BM25 also rank the full catalog (candidates "none"). Every variant
    (profile source × encoder, untrained or trained here × persona vector kind), N, gamma and the fusion
    weight are tuned on validation; test is measured once at the choice. Personas, embeddings and training
    use only reviews and interactions that are not held out; personas and vectors are cached under --work.
    When the chosen variant has a trained encoder, it is saved to OUT/encoder for `--embedding-model`.
    """
    from ..encoder import Encoder
    from ..evaluation.data import load_eval_data
    from ..evaluation.protocol import LooSettings, run_loo
    from ..evaluation.report import as_json as report_json
    from ..evaluation.report import markdown, write_report

    reader = make_reader(skip_invalid, None, out / "rejects.jsonl")
    data = load_eval_data(data_dir, reader)
    report_rejects(reader)
    settings = LooSettings(generator=generator, seed=seed, min_rating=min_rating, train=train,
                           evidence_prior=evidence_prior, generators=generators, learned_reranker=learned_reranker,
                           hard_negatives=hard_negatives,
                           head=HeadSettings(epochs=train_epochs, max_steps=train_steps or None, seed=seed,
                                             positive=train_positive))
    encoder = Encoder(model)
    report = run_loo(data, settings, encoder, work or out / "work", progress=progress_bar(progress, "personas"))
    json_path, md_path = write_report(report, out)
    if report.chosen_head is not None:
        saved = save_chosen_encoder(report, encoder.model_name, data_dir, out / "encoder")
        click.echo(f"the chosen variant's trained encoder: {saved} (use it with --embedding-model)", err=True)
    if as_json:
        click.echo(json.dumps(report_json(report)))
    else:
        click.echo(markdown(report))
        click.echo(f"written to {json_path} and {md_path}")


def parse_generators(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in GENERATOR_KINDS]
    if unknown or not names:
        raise click.BadParameter(f"{', '.join(unknown) or 'none given'}: choose from {', '.join(GENERATOR_KINDS)}")
    return names


def save_chosen_encoder(report, base_model: str, data_dir: Path, folder: Path) -> Path:
    import shutil

    from ..evaluation.data import FILES
    from ..training import data_hash, save_encoder

    setting = report.summary["best_persona_setting"]
    card = {"base_model": base_model, "data": str(data_dir), "data_hash": data_hash([data_dir / f for f in FILES]),
            "split": {"kind": "leave-one-out training split", "min_rating": report.config["min_rating"]},
            "profile": {"source": setting["profile"], "last_n": 10, "gamma": 0.65},
            "persona_vector": setting["persona_vector"], "evidence_prior": report.config["evidence_prior"],
            "head": report.config["training"]["head"],
            "examples": report.chosen_head.examples, "losses": report.chosen_head.losses,
            "chosen_by": "p4r eval loo, on validation " + report.config["tune_metric"]}
    shutil.rmtree(folder, ignore_errors=True)
    return save_encoder(base_model, report.chosen_head.weight, folder, card)
