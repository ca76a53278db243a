"""`p4r recommend` and `p4r explain`: history or text → profile → persona query → explained hits."""

from __future__ import annotations

import json
import textwrap

import click

from ..catalog import load_interactions
from ..encoder import Encoder
from ..errors import ConfigError, NotFoundError
from ..models import Hit, Review
from ..profile import PROFILE_SOURCES, ProfileConfig
from ..recommend import RANK_LIMIT, Explanation, Recommendation, Recommender, Skipped, UserInput, shown_ids
from .app import cli
from .engines import engine_options, open_backend
from .options import (
    FINITE_FLOAT,
    input_file,
    json_option,
    make_reader,
    model_option,
    report_rejects,
    skip_invalid_option,
)
from .search_options import search_options

PROFILE_OPTIONS = [
    click.option("--last-n", type=int, default=10, show_default=True, help="Interactions in the profile."),
    click.option("--gamma", type=FINITE_FLOAT, default=0.65, show_default=True, help="Recency decay: weight gamma**age."),
    click.option(
        "--profile-text-weight", type=FINITE_FLOAT, default=0.5, show_default=True, help="Weight of --text with a history."
    ),
    click.option("--profile-source", type=click.Choice(PROFILE_SOURCES), default="items", show_default=True,
                 help="A history interaction as the item, the user's review of it (--reviews), or both."),
]


def profile_options(f):
    """How a profile is made (last_n, gamma, profile_text_weight, profile_source) and the encoder (model)."""
    for option in reversed([*PROFILE_OPTIONS, model_option]):
        f = option(f)
    return f


def user_options(f):
    for option in reversed(
        [
            click.option("--user", "user_id", default=None, help="User id to look up in --interactions."),
            click.option("--interactions", "interactions_path", type=input_file, default=None, help="Interactions JSONL."),
            click.option("--history", default=None, metavar="ID,ID,…", help="Item ids the user interacted with, oldest first."),
            click.option("--text", "user_text", default=None, help="Free text: the user's own reviews, or what they want."),
            *PROFILE_OPTIONS,
            click.option("--reviews", "reviews_path", type=input_file, default=None,
                         help="Reviews JSONL: the --user's own reviews, for --profile-source reviews or both."),
            model_option,
            skip_invalid_option,
        ]
    ):
        f = option(f)
    return f


def user_reviews(user_id, reviews_path, source, skip_invalid) -> dict[str, str]:
    """The user's own reviews (item id → text), read only when the profile source uses them."""
    if source == "items":
        return {}
    if reviews_path is None or not user_id:
        raise ConfigError(f"--profile-source {source} needs --user and --reviews (the user's own reviews)")
    reader = make_reader(skip_invalid, None, reviews_path.with_name(reviews_path.name + ".rejects.jsonl"))
    found = {r.item_id: r.text for _, r, _ in reader.read(reviews_path, Review) if r.user_id == user_id}
    report_rejects(reader)
    return found


def user_input(user_id, interactions_path, history, user_text, backend, skip_invalid,
               reviews: dict[str, str] | None = None) -> UserInput:
    if user_id and history:
        raise ConfigError("give --user or --history, not both")
    if user_id:
        if interactions_path is None:
            raise ConfigError("--user needs --interactions")
        reader = make_reader(skip_invalid, None, interactions_path.with_name(interactions_path.name + ".rejects.jsonl"))
        # items the index lacks are not an error here: the Recommender skips the asked user's, and says so
        by_user = load_interactions(interactions_path, reader)
        report_rejects(reader)
        if user_id not in by_user:
            raise NotFoundError(f"user {user_id!r} has no interactions in {interactions_path}")
        return UserInput(history=tuple(i.item_id for i in by_user[user_id]), text=user_text, reviews=reviews or {})
    ids = tuple(i.strip() for i in (history or "").split(",") if i.strip())
    return UserInput(history=ids, text=user_text, reviews=reviews or {})


def refuse_history_in_dry_run(dry_run: bool, user_id, history) -> None:
    """A history profile is made of the cluster's persona vectors, which a dry run cannot read."""
    if dry_run and (user_id or history):
        raise ConfigError("a dry run needs --text instead of --user/--history: it contacts no cluster, and a "
                          "history profile is made of the persona vectors stored there")


def tell(skipped: Skipped, why_empty: tuple[str, ...] = ()) -> None:
    """On stderr: what the index lacked, and why nothing came back."""
    for what, ids in (("history item", skipped.history), ("candidate", skipped.candidates)):
        if ids:
            click.echo(f"note: skipped {len(ids)} {what}(s) not in the index: {shown_ids(ids)}", err=True)
    for reason in why_empty:
        click.echo(f"note: no results: {reason}", err=True)


def report_json(report: Recommendation) -> dict:
    skipped = {"history": list(report.skipped.history), "candidates": list(report.skipped.candidates)}
    return {"skipped": skipped, "why_empty": list(report.why_empty)}


def make_recommender(engine_args, model, last_n, gamma, profile_text_weight, profile_source="items"):
    # One BLAS thread: a scan is a memory-bound matrix-vector product, and on a busy 2-core machine two
    # threads waited for each other (benchmarks/README.md: 8.0 ms against 0.3 ms for 8,000 rows).
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
    backend = open_backend(*engine_args)
    encoder = Encoder(model) if model else None
    profile = ProfileConfig(last_n, gamma, profile_text_weight, source=profile_source)
    return backend, Recommender(backend, encoder=encoder, profile=profile)


@cli.command()
@engine_options
@user_options
@search_options
@json_option
def recommend(engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version, assume_license, user_id,
              interactions_path, history, user_text, last_n, gamma, profile_text_weight, profile_source, reviews_path,
              model, skip_invalid, search, as_json):
    """Recommend items for a user, each explained by its best-matching persona."""
    refuse_history_in_dry_run(dry_run, user_id, history)
    engine_args = (engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version, assume_license)
    backend, recommender = make_recommender(engine_args, model, last_n, gamma, profile_text_weight, profile_source)
    reviews = user_reviews(user_id, reviews_path, profile_source, skip_invalid)
    user = user_input(user_id, interactions_path, history, user_text, backend, skip_invalid, reviews)
    report = recommender.recommend_with_report(user, search, diagnose=not dry_run)
    hits = report.hits
    if dry_run:
        return
    tell(report.skipped, report.why_empty)
    if as_json:
        click.echo(json.dumps({"user": user_id, "history": list(user.history), "hits": [h.model_dump(mode="json") for h in hits],
                               **report_json(report)}))
        return
    click.echo(f"{len(hits)} recommendation(s){f' for {user_id}' if user_id else ''}:")
    for rank, hit in enumerate(hits, start=1):
        click.echo(format_hit(rank, hit))


@cli.command()
@engine_options
@user_options
@click.option("--item", "item_id", required=True, help="The item to explain.")
@json_option
def explain(engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version, assume_license, user_id, interactions_path, history, user_text, last_n, gamma, profile_text_weight,
            profile_source, reviews_path, model, skip_invalid, item_id, as_json):
    """Explain why ITEM suits this user: its personas by similarity, and the history behind the match."""
    if dry_run:
        raise ConfigError("explain reads the item's persona vectors from the cluster, so it has no --dry-run")
    engine_args = (engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version, assume_license)
    backend, recommender = make_recommender(engine_args, model, last_n, gamma, profile_text_weight, profile_source)
    reviews = user_reviews(user_id, reviews_path, profile_source, skip_invalid)
    user = user_input(user_id, interactions_path, history, user_text, backend, skip_invalid, reviews)
    explanation = recommender.explain(user, item_id)
    tell(Skipped(history=tuple(explanation.skipped_history)))
    click.echo(explanation.model_dump_json() if as_json else format_explanation(explanation))


def wrap(text: str, indent: str = "     ") -> str:
    return textwrap.fill(" ".join(text.split()), width=100, initial_indent=indent, subsequent_indent=indent)


def format_scores(hit: Hit) -> str:
    return ", ".join(f"{k} {v:.0f}" if k == "candidate_rank" else f"{k} {number(v)}" for k, v in hit.scores.items())


def number(value: float) -> str:
    """Three decimals, or four significant digits below 0.1, where RRF scores (about 1/60) live."""
    return f"{value:.3f}" if value == 0 or abs(value) >= 0.1 else f"{value:.4g}"


def format_hit(rank: int, hit: Hit) -> str:
    lines = [f"{rank:>2}. {hit.title} [{hit.item_id}]  score {number(hit.score)}  ({format_scores(hit)})"]
    if hit.persona:
        lines.append(wrap(f"persona: {hit.persona.name} ({hit.persona.support:.0%} of reviews): {hit.persona.description}"))
    if hit.evidence:
        lines.append(wrap(f'evidence {hit.evidence[0].review_id}: "{hit.evidence[0].text}"'))
    return "\n".join(lines)


def rank_line(e: Explanation) -> str:
    """Where the item ranks among what could be recommended: the unseen items."""
    if e.in_history:
        return (f"not ranked: excluded as seen (it is in the user's history; {e.catalog_size} items, "
                f"{e.seen} seen)")
    of = f"{e.catalog_size - e.seen} unseen items ({e.catalog_size} items, {e.seen} seen)" if e.seen else \
        f"{e.catalog_size} items"
    return f"rank {e.rank} of {of}" if e.rank else f"not in the top {RANK_LIMIT} of {of}"


def format_explanation(e: Explanation) -> str:
    rank = rank_line(e)
    lines = [f"{e.hit.title} [{e.hit.item_id}]: score {e.hit.score:.3f}, {rank}", "", "Personas, best match first:"]
    lines += [f"  {s.cosine:+.3f}  {s.persona.name} ({s.persona.support:.0%} of reviews)" for s in e.persona_scores]
    best = e.persona_scores[0].persona
    lines += ["", f"Best persona: {best.name}", wrap(best.description, "  "), wrap(best.rationale, "  ")]
    if e.hit.evidence:
        lines += ["", "Evidence:"] + [wrap(f'{s.review_id}: "{s.text}"', "  ") for s in e.hit.evidence]
    if e.contributions:
        lines += ["", "History behind it (recency weight × similarity to the persona):"]
        lines += [f"  {c.item_id}: {c.recency_weight:.2f} × {c.cosine_to_persona:+.3f}" for c in e.contributions]
    return "\n".join(lines)
