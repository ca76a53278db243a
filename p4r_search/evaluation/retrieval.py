"""Review → item retrieval (`p4r eval retrieval`): for data without user ids, such as the clothing reviews.

Each item's reviews are split (holdout.py); personas are generated from the training reviews only, and each
held-out review is a query whose one relevant item is its own item, ranked against the whole catalog
(candidates "none"). Rankers, all over the same catalog:

- persona: max over the item's persona vectors of the cosine with the query's embedding (max-sim);
- persona-centroids: max-sim over the personas' review clusters instead of their texts: each persona is the
  normalised mean of its evidence reviews' embeddings (several vectors per item, without the persona text);
- single: the single-vector item embedding: the cosine with the normalised mean of the item's training-review
  embeddings;
- bm25-personas / bm25-reviews: BM25 (bm25s; k1 1.2, b 0.75, English stop words) of the query text against
  the item's persona texts, or against its training-review texts, each joined into one document;
- hybrid: the embedded engine's hybrid search: the top `num_candidates` of persona and of bm25-personas
  (items with a BM25 match only), fused linearly (min-max per list, weights 0.5 / 0.5; p4r_search.fusion).

Equal scores rank by ascending item id. Vectors are cached in `embeddings.sqlite` under the output folder,
and personas in `personas.jsonl` (resumable), so a rerun encodes and generates nothing again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import fusion
from ..catalog import Catalog
from ..encoder import TextEncoder
from ..errors import InputError
from ..models import ItemPersonas
from ..personas import make_generator
from ..personas.runner import generate_personas, read_personas
from .bootstrap import paired_difference
from .holdout import HoldoutSplit, holdout_split
from .metrics import DEFAULT_KS, evaluate, per_query
from .rerankers import BM25_B, BM25_K1, bm25

RANKERS = ("persona", "persona-centroids", "single", "bm25-personas", "bm25-reviews", "hybrid")
# (base, other): the paper's claim (several persona vectors against one) and what BM25 adds to personas
COMPARISONS = (("single", "persona"), ("single", "persona-centroids"), ("persona", "hybrid"))
COMPARED_METRICS = ("Recall@10", "NDCG@10")


@dataclass(frozen=True)
class RetrievalConfig:
    fraction: float = 0.2
    min_reviews: int = 5
    seed: int = 0
    generator: str = "extractive"
    ks: tuple[int, ...] = DEFAULT_KS
    num_candidates: int = 100  # per list before hybrid fusion: the engine's default
    vector_weight: float = 0.5
    text_weight: float = 0.5


@dataclass(frozen=True)
class ItemTable:
    """The candidates in ascending id order, with what each ranker needs of them."""

    item_ids: list[str]
    persona_vectors: np.ndarray  # all personas, grouped by item in `item_ids` order
    persona_starts: np.ndarray  # the row of each item's first persona
    centroid_vectors: np.ndarray  # per persona (same rows): the normalised mean of its evidence reviews
    item_vectors: np.ndarray  # normalised mean of the training-review vectors
    persona_texts: list[str]
    review_texts: list[str]


@dataclass
class RetrievalReport:
    config: dict
    results: list[dict]
    summary: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def build_item_table(train: Catalog, personas: Mapping[str, ItemPersonas], encoder: TextEncoder) -> ItemTable:
    item_ids = sorted(train.items)
    texts_by_item = [[p.embedding_text for p in personas[item_id].personas] for item_id in item_ids]
    counts = np.array([len(texts) for texts in texts_by_item])
    persona_vectors = encoder.encode([text for texts in texts_by_item for text in texts])
    review_counts = [len(train.reviews[item_id]) for item_id in item_ids]
    reviews = [r for item_id in item_ids for r in train.reviews[item_id]]
    review_vectors = encoder.encode([r.text for r in reviews])
    per_item = np.split(review_vectors, np.cumsum(review_counts)[:-1])
    row_of = {r.review_id: i for i, r in enumerate(reviews)}
    centroids = [mean_direction(review_vectors[[row_of[e] for e in p.evidence_review_ids]])
                 for item_id in item_ids for p in personas[item_id].personas]
    return ItemTable(
        item_ids=item_ids,
        persona_vectors=persona_vectors,
        persona_starts=np.concatenate([[0], np.cumsum(counts)[:-1]]),
        centroid_vectors=np.stack(centroids),
        item_vectors=np.stack([mean_direction(vectors) for vectors in per_item]),
        persona_texts=["\n".join(texts) for texts in texts_by_item],
        review_texts=["\n".join(r.text for r in train.reviews[i]) for i in item_ids],
    )


def mean_direction(vectors: np.ndarray) -> np.ndarray:
    mean = vectors.mean(axis=0)
    norm = np.linalg.norm(mean)
    return mean / norm if norm > 0 else mean


def persona_scores(queries: np.ndarray, table: ItemTable, vectors: np.ndarray | None = None) -> np.ndarray:
    """(queries, items): each item's best persona cosine (max-sim), over the persona vectors or `vectors`
    (one row per persona, in the same order)."""
    vectors = table.persona_vectors if vectors is None else vectors
    return np.maximum.reduceat(queries @ vectors.T, table.persona_starts, axis=1)


def hybrid_scores(vector: np.ndarray, text: np.ndarray, item_ids: list[str], config: RetrievalConfig) -> np.ndarray:
    """The engine's hybrid: each list's top `num_candidates` (BM25: matches only), fused linearly; the
    items in neither list score -inf."""
    column = {item_id: i for i, item_id in enumerate(item_ids)}
    fused = np.full(vector.shape, -np.inf)
    for q in range(len(vector)):
        lists = [top_scores(vector[q], item_ids, config.num_candidates),
                 top_scores(text[q], item_ids, config.num_candidates, positive_only=True)]
        for item_id, score in fusion.linear(lists, (config.vector_weight, config.text_weight)).items():
            fused[q, column[item_id]] = score
    return fused


def top_scores(row: np.ndarray, item_ids: list[str], n: int, positive_only: bool = False) -> dict[str, float]:
    order = np.argsort(-row, kind="stable")[:n]
    return {item_ids[i]: float(row[i]) for i in order if not positive_only or row[i] > 0}


def ranked_ids(scores: np.ndarray, item_ids: list[str], depth: int) -> list[list[str]]:
    """Each query's top `depth` item ids; the stable sort keeps ties in ascending id order."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    return [[item_ids[i] for i in row if np.isfinite(scores[q, i])] for q, row in enumerate(order)]


def check_no_leakage(split: HoldoutSplit, personas: Mapping[str, ItemPersonas], personas_path: Path) -> None:
    """Refuse personas built from, or citing, a held-out review (a stale or foreign personas file)."""
    held_out = split.held_out_ids
    for item_id in split.train.items:
        record = personas[item_id]
        cited = set(record.used_review_ids).union(*(p.evidence_review_ids for p in record.personas))
        leaked = sorted(cited & held_out)
        if leaked:
            raise InputError(str(personas_path), None, f"personas of item {item_id!r} use held-out review {leaked[0]!r}")


def score_all(split: HoldoutSplit, table: ItemTable, encoder: TextEncoder, config: RetrievalConfig) -> dict:
    texts = [review.text for review in split.queries]
    vectors = encoder.encode(texts)
    persona = persona_scores(vectors, table)
    bm25_personas = bm25(texts, table.persona_texts)
    return {
        "persona": persona,
        "persona-centroids": persona_scores(vectors, table, table.centroid_vectors),
        "single": vectors @ table.item_vectors.T,
        "bm25-personas": bm25_personas,
        "bm25-reviews": bm25(texts, table.review_texts),
        "hybrid": hybrid_scores(persona, bm25_personas, table.item_ids, config),
    }


def run_retrieval(
    catalog: Catalog,
    out_dir: Path,
    encoder: TextEncoder,
    config: RetrievalConfig = RetrievalConfig(),
    *,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
) -> RetrievalReport:
    """Split, generate personas (resumable, in OUT_DIR/personas.jsonl), rank, and measure every ranker."""
    split = holdout_split(catalog, fraction=config.fraction, min_reviews=config.min_reviews, seed=config.seed)
    if not split.queries:
        raise InputError("reviews", None, f"no item has {config.min_reviews} or more reviews, so there is no query")
    generator = make_generator(config.generator, encoder, seed=config.seed)
    personas_path = out_dir / "personas.jsonl"
    generated = generate_personas(split.train, generator, personas_path, progress=progress)
    personas = read_personas(personas_path)
    missing = [item_id for item_id in split.train.items if item_id not in personas]
    if missing:  # an LLM generator may fail on some items; a rerun retries them
        raise InputError(str(personas_path), None, f"{len(missing)} item(s) have no personas, e.g. {missing[0]!r} "
                         f"({generated.failed} failed in this run); rerun to retry them")
    check_no_leakage(split, personas, personas_path)
    table = build_item_table(split.train, personas, encoder)
    relevant = [{review.item_id} for review in split.queries]
    ranked = {name: ranked_ids(scores, table.item_ids, max(config.ks))
              for name, scores in score_all(split, table, encoder, config).items()}
    results = [{"task": "retrieval", "split": "test", "candidates": "none", "reranker": name,
                **evaluate(ranking, relevant, config.ks)} for name, ranking in ranked.items()]
    summary = {
        "items": len(catalog.items),
        "reviews": sum(len(r) for r in catalog.reviews.values()),
        "training_reviews": sum(len(r) for r in split.train.reviews.values()),
        "queries": len(split.queries),
        "items_with_queries": len(catalog.items) - len(split.items_without_queries),
        "items_without_queries": len(split.items_without_queries),
        "personas": len(table.persona_vectors),
        "personas_generated_now": generated.generated,
        "comparisons": compare(ranked, relevant, config.seed),
    }
    run_config = {**asdict(config), "generator_info": generator.info.model_dump(mode="json"),
                  "model": encoder.model_name, "bm25": {"k1": BM25_K1, "b": BM25_B, "stopwords": "en"},
                  "hybrid": "persona + bm25-personas, linear fusion"}
    return RetrievalReport(config=run_config, results=results, summary=summary)


def compare(ranked: Mapping[str, list[list[str]]], relevant: list[set[str]], seed: int) -> list[dict]:
    """Paired differences (other − base) with bootstrap 95% intervals, per compared metric."""
    values = {name: per_query(ranked[name], relevant, (10,)) for name in {n for pair in COMPARISONS for n in pair}}
    return [{"base": base, "other": other,
             **{m: asdict(paired_difference(values[base][m], values[other][m], seed=seed)) for m in COMPARED_METRICS}}
            for base, other in COMPARISONS]


def describe_comparisons(comparisons: Sequence[dict]) -> str:
    lines = []
    for c in comparisons:
        parts = [f"{m} {c[m]['base']:.4f} → {c[m]['other']:.4f} ({c[m]['difference']:+.4f}, 95% CI "
                 f"{c[m]['ci95'][0]:+.4f} to {c[m]['ci95'][1]:+.4f})" for m in COMPARED_METRICS]
        lines.append(f"- {c['other']} against {c['base']}: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


TABLE_METRICS = ("Recall@5", "Recall@10", "NDCG@10", "MRR@10", "Recall@20", "NDCG@20")


def markdown_table(results: Sequence[dict], metrics: Sequence[str] = TABLE_METRICS) -> str:
    shown = [m for m in metrics if all(m in row for row in results)]
    lines = ["| reranker | " + " | ".join(shown) + " |", "| --- |" + " ---: |" * len(shown)]
    lines += ["| " + row["reranker"] + " | " + " | ".join(f"{row[m]:.4f}" for m in shown) + " |" for row in results]
    return "\n".join(lines) + "\n"
