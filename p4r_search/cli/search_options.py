"""The search options of `p4r recommend`, gathered into one `SearchOptions`; an option that would do nothing
(a weight without --query, a window outside rescore mode) is refused rather than silently ignored."""

from __future__ import annotations

import functools

import click
from click.core import ParameterSource

from ..errors import ConfigError
from ..query import MAX_WINDOW, Fusion, parse_filters
from ..recommend import DEFAULT_WINDOW, SearchOptions, candidate_count, idle_options
from .options import FINITE_FLOAT, FiniteFloatRange


def _renamed(new: str, what: str):
    def refuse(ctx, param, value):
        if value is not None:
            raise ConfigError(f"{param.opts[0]} was renamed {new}: it weighs {what}")
        return value

    return refuse


OPTIONS = [
    click.option("--query", "keywords", default=None, metavar="WORDS",
                 help="Keywords: BM25 over persona text. With --mode knn they are fused with the persona score "
                      "(hybrid); with --mode rescore they find the window that the persona score reranks."),
    click.option("-k", type=click.IntRange(1), default=10, show_default=True, help="How many items."),
    click.option("--mode", type=click.Choice(["knn", "exact", "rescore"]), default="knn", show_default=True,
                 help="knn: nearest personas (HNSW), then scored exactly; exact: every item scored exactly (a "
                      "scan; what --candidates always does); rescore: --query's BM25 finds --window items and "
                      "the persona score reranks them (--keyword-weight x BM25 + --persona-weight x cosine)."),
    click.option("--num-candidates", type=click.IntRange(1, MAX_WINDOW), default=100, show_default=True,
                 help="knn and hybrid: items each retriever proposes before the top k."),
    click.option("--window", type=click.IntRange(1, MAX_WINDOW), default=None,
                 help=f"--mode rescore: how many of --query's best hits the persona score reranks "
                      f"[default: {DEFAULT_WINDOW}; per shard on a cluster]."),
    click.option("--fusion", type=click.Choice([f.value for f in Fusion]), default="linear", show_default=True,
                 help="With --query in knn mode: linear (weighted sum of min-max normalised scores) or rrf "
                      "(weighted reciprocal rank fusion)."),
    click.option("--persona-weight", type=FiniteFloatRange(0), default=0.5, show_default=True,
                 help="With --query: the weight of the persona score (the profile's cosine)."),
    click.option("--keyword-weight", type=FiniteFloatRange(0), default=0.5, show_default=True,
                 help="With --query: the weight of --query's BM25 score. (--profile-text-weight weighs --text.)"),
    click.option("--vector-weight", type=FINITE_FLOAT, default=None, hidden=True, expose_value=False,
                 callback=_renamed("--persona-weight", "the persona score")),
    click.option("--text-weight", type=FINITE_FLOAT, default=None, hidden=True, expose_value=False,
                 callback=_renamed("--keyword-weight", "--query's BM25 score")),
    click.option("--filter", "filters", multiple=True, metavar="FIELD=VALUE",
                 help="categories=…, item_id=… or attributes.NAME=… (repeatable; values of one field are OR-ed, "
                      "fields AND-ed; values are case-sensitive)."),
    click.option("--candidates", default=None, metavar="ID,ID,…",
                 help="Rerank only these items, scored exactly (the paper's setting)."),
    click.option("--candidate-weight", type=FiniteFloatRange(0, 1), default=None,
                 help="Fuse --candidates' order (your ranking, best first) with the persona score: "
                      "(1 - W) * rank part + W * persona part. `p4r eval loo` reports the W to start with."),
    click.option("--candidate-scores", default=None, metavar="S,S,…",
                 help="Your ranking's scores of --candidates (same order): their min-max replaces the rank part, "
                      "(1 - W) * score part + W * persona part (p4r eval loo's fusion-score). Needs --candidate-weight."),
    click.option("--include-seen", is_flag=True, help="Allow items from the user's history."),
]
NAMES = ("keywords", "k", "mode", "num_candidates", "window", "fusion", "persona_weight", "keyword_weight",
         "filters", "candidates", "candidate_weight", "candidate_scores", "include_seen")


def search_options(f):
    """Adds the options, and passes the command one `search: SearchOptions` instead of them."""

    @functools.wraps(f)
    def command(*args, **kwargs):
        values = {name: kwargs.pop(name) for name in NAMES}
        kwargs["search"] = build(click.get_current_context(), **values)
        return f(*args, **kwargs)

    for option in reversed(OPTIONS):
        command = option(command)
    return command


def build(ctx: click.Context, *, keywords, k, mode, num_candidates, window, fusion, persona_weight, keyword_weight,
          filters, candidates, candidate_weight, candidate_scores, include_seen) -> SearchOptions:
    refuse_idle_options(ctx, keywords, mode)
    return SearchOptions(
        k=k, num_candidates=candidate_count(mode, num_candidates, window), mode=mode,
        keywords=keywords, fusion=fusion, persona_weight=persona_weight, keyword_weight=keyword_weight,
        filters=parse_filters(filters),
        candidate_ids=tuple(c.strip() for c in candidates.split(",") if c.strip()) if candidates else None,
        candidate_weight=candidate_weight, candidate_scores=parse_scores(candidate_scores),
        include_seen=include_seen,
    )


def refuse_idle_options(ctx: click.Context, keywords: str | None, mode: str) -> None:
    given = {name for name in NAMES if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    if why := idle_options(given, keywords, mode, option_name):
        raise ConfigError(why)


def option_name(param: str) -> str:
    return "--query" if param == "keywords" else "--" + param.replace("_", "-")


def parse_scores(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}: comma-separated numbers, one per candidate",
                                 param_hint="'--candidate-scores'") from None
