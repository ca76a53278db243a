"""Training examples for the encoder: (a user's history before an interaction → the persona of that item).

Everything is a recipe over one table of texts (persona texts and review texts), so that the trainer can
recompute every vector from the texts' embeddings under the head being trained:

- **anchor**: the user's profile before the interaction, built as serving builds it (profile.py): the last
  N interactions, each by the profile source (the item as the mean of its persona vectors, the user's review,
  or both), weighted gamma**age;
- **positive**: the persona of the next item that this user's review of it supports (the persona whose
  evidence holds the review; else the persona nearest to the review). Its evidence centroid leaves that
  review out: at serving time a user's review of an item they have not met yet is nowhere in its personas,
  and training on it would teach the encoder to match authors rather than tastes;
- **hard negatives**: items the candidate generator ranks high for this user (the reranker only ever chooses
  among those), each scored by its best persona, as max-sim scores at serving time.

Only the interactions given are used: the caller passes training interactions only (no validation or test
interaction; `p4r train encoder` and `p4r eval loo` pass the leave-one-out training split).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix

from ..models import ItemPersonas, Review
from ..persona_vectors import PersonaVectorKind, parse_kind, recipe
from ..profile import ProfileConfig, ProfileSource, recency_weights


@dataclass(frozen=True)
class PersonaTable:
    """Every persona of the catalog as rows of the text table."""

    item_ids: list[str]
    item_personas: np.ndarray  # (items, most personas) persona indices, -1 padded; best support first
    text_rows: np.ndarray  # (personas,)
    evidence: csr_matrix  # (personas, texts) 1 per evidence review (summed); an empty row: text fallback
    item_evidence: csr_matrix  # (personas, texts) mean weights of the reviews the persona's item cites


@dataclass(frozen=True)
class TrainingSet:
    texts: list[str]
    kind: PersonaVectorKind
    source: ProfileSource
    personas: PersonaTable
    interaction_items: np.ndarray  # (interactions,) item index of each distinct history interaction
    interaction_reviews: np.ndarray  # (interactions,) text row of the user's review of it, -1 if none
    anchors: csr_matrix  # (examples, interactions) recency weights
    positive_text: np.ndarray  # (examples,) text row of the positive persona's text
    positive_evidence: csr_matrix  # (examples, texts) its evidence without the user's own review (summed)
    positive_item: csr_matrix  # (examples, texts) its item's reviews without the user's own (mean weights)
    targets: np.ndarray  # (examples,) item index of the positive
    positive_persona: np.ndarray  # (examples,) persona index of the positive
    hard: np.ndarray  # (examples, hard negatives) item indices, -1 padded
    users: list[str]  # (examples,) whose history each example is
    prior: float = 0.0  # the evidence prior (persona_vectors.py)

    def __len__(self) -> int:
        return len(self.targets)


class _Texts:
    def __init__(self, initial: Sequence[str]):
        self.rows = {text: n for n, text in enumerate(initial)}

    def row(self, text: str) -> int:
        return self.rows.setdefault(text, len(self.rows))


def _sparse(rows: list[list[int]], weights: list[list[float]], width: int) -> csr_matrix:
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    cols = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if rows else np.zeros(0, np.int64)
    data = np.concatenate([np.asarray(w, dtype=np.float32) for w in weights]) if rows else np.zeros(0, np.float32)
    return csr_matrix((data, cols, indptr), shape=(len(rows), width))


def by_support(record: ItemPersonas) -> list:
    return sorted(record.personas, key=lambda p: -p.support)


def persona_rows(personas: Mapping[str, ItemPersonas], reviews: Mapping[str, Review], texts: _Texts
                 ) -> tuple[list[str], np.ndarray, np.ndarray, list[list[int]], list[list[int]], dict[str, int]]:
    """Item ids; (items, most personas) persona indices; each persona's text row, evidence rows and its
    item's rows; and the persona citing each review id (the first, when several do)."""
    item_ids = list(personas)
    flat = [p for item_id in item_ids for p in by_support(personas[item_id])]
    owners = [item_id for item_id in item_ids for _ in personas[item_id].personas]
    made = recipe(flat, {rid: r.text for rid, r in reviews.items()}, owners)
    rows = [texts.row(t) for t in made.texts]  # recipe rows → table rows
    text_rows = np.array([rows[r] for r in made.text_rows], dtype=np.int64)
    evidence = [[rows[r] for r in ev] for ev in made.evidence_rows]
    item_rows = [[rows[r] for r in ev] for ev in made.item_rows]
    holder = {rid: n for n, p in reversed(list(enumerate(flat))) for rid in p.evidence_review_ids}
    sizes = [len(personas[i].personas) for i in item_ids]
    pad = np.full((len(item_ids), max(sizes, default=1)), -1, dtype=np.int64)
    start = 0
    for n, size in enumerate(sizes):
        pad[n, :size] = np.arange(start, start + size)
        start += size
    return item_ids, pad, text_rows, evidence, item_rows, holder


def mean_rows(rows: list[list[int]], width: int) -> csr_matrix:
    return _sparse(rows, [[1 / len(r)] * len(r) if r else [] for r in rows], width)


def sum_rows(rows: list[list[int]], width: int) -> csr_matrix:
    return _sparse(rows, [[1.0] * len(r) for r in rows], width)


def build_training_set(
    sequences: Mapping[str, Sequence[str]],
    personas: Mapping[str, ItemPersonas],
    reviews: Sequence[Review],
    *,
    profile: ProfileConfig,
    kind: PersonaVectorKind | str = PersonaVectorKind.EVIDENCE,
    hard_negatives: Mapping[str, Sequence[str]] | None = None,
    text_vectors: Mapping[str, np.ndarray] | None = None,
    prior: float = 0.0,
) -> TrainingSet:
    """`sequences`: user → training item ids, oldest first. `reviews`: the reviews that may be used (training
    reviews only). `hard_negatives`: user → candidate item ids, best first. `text_vectors` (text → the base
    encoder's unit vector, for every persona and review text) picks the positive when no persona cites the
    user's review: the persona nearest to it; without them such interactions give no example."""
    kind = parse_kind(kind)
    texts = _Texts([])
    by_id = {r.review_id: r for r in reviews}
    item_ids, item_personas, text_rows, evidence, item_rows, holder = persona_rows(personas, by_id, texts)
    position = {item_id: n for n, item_id in enumerate(item_ids)}
    nearest = (_nearest_persona(kind, list(texts.rows), text_rows, evidence, item_rows, text_vectors, prior)
               if text_vectors else None)
    own = {(r.user_id, r.item_id): r for r in reviews if r.user_id is not None}
    interactions: dict[tuple[str, str], int] = {}
    int_items: list[int] = []
    int_reviews: list[int] = []

    def interaction(user: str, item_id: str) -> int:
        key = (user, item_id)
        if key not in interactions:
            interactions[key] = len(int_items)
            int_items.append(position[item_id])
            review = own.get(key)
            int_reviews.append(texts.row(review.text) if review is not None and profile.source.value != "items" else -1)
        return interactions[key]

    anchor_rows, anchor_weights, pos_text, pos_rows, pos_items, targets, hard, pos_persona = [], [], [], [], [], [], [], []
    users: list[str] = []
    for user in sorted(sequences):
        seq = [i for i in sequences[user] if i in position]
        negatives = [position[i] for i in (hard_negatives or {}).get(user, ()) if i in position and i not in seq]
        for t in range(1, len(seq)):
            review = own.get((user, seq[t]))
            persona = _positive(review, item_personas[position[seq[t]]], holder, nearest)
            if persona is None:
                continue
            own_row = texts.rows.get(review.text)
            rows = [r for r in evidence[persona] if r != own_row]
            pos_items.append([r for r in item_rows[persona] if r != own_row])
            history = seq[max(0, t - profile.last_n):t]
            anchor_rows.append([interaction(user, i) for i in history])
            anchor_weights.append(list(recency_weights(len(history), profile.gamma)))
            pos_text.append(int(text_rows[persona]))
            pos_rows.append(rows)
            targets.append(position[seq[t]])
            pos_persona.append(persona)
            hard.append(negatives)
            users.append(user)
    width = max((len(h) for h in hard), default=0)
    hard_matrix = np.full((len(hard), width), -1, dtype=np.int64)
    for n, h in enumerate(hard):
        hard_matrix[n, :len(h)] = h
    n_texts = len(texts.rows)
    return TrainingSet(
        texts=list(texts.rows), kind=kind, source=profile.source,
        personas=PersonaTable(item_ids, item_personas, text_rows, sum_rows(evidence, n_texts),
                              mean_rows(item_rows, n_texts)),
        interaction_items=np.array(int_items, dtype=np.int64), interaction_reviews=np.array(int_reviews, dtype=np.int64),
        anchors=_sparse(anchor_rows, anchor_weights, len(int_items)),
        positive_text=np.array(pos_text, dtype=np.int64),
        positive_evidence=sum_rows(pos_rows, n_texts), positive_item=mean_rows(pos_items, n_texts),
        targets=np.array(targets, dtype=np.int64), positive_persona=np.array(pos_persona, dtype=np.int64),
        hard=hard_matrix, users=users, prior=prior,
    )


def _nearest_persona(kind: PersonaVectorKind, texts: list[str], text_rows: np.ndarray, evidence: list[list[int]],
                     item_rows: list[list[int]], text_vectors: Mapping[str, np.ndarray], prior: float):
    """A function (review text, persona indices) → the persona whose base vector is nearest to the review."""
    from ..persona_vectors import PersonaVectorRecipe, combine

    embedded = np.stack([text_vectors[t] for t in texts])
    made = PersonaVectorRecipe(texts, text_rows, [np.asarray(r, dtype=np.int64) for r in evidence],
                               [np.asarray(r, dtype=np.int64) for r in item_rows])
    vectors, _ = combine(kind, made, embedded, prior)

    def nearest(text: str, candidates: list[int]) -> int:
        return candidates[int(np.argmax(vectors[candidates] @ text_vectors[text]))]

    return nearest


def _positive(review: Review | None, item_personas: np.ndarray, holder: Mapping[str, int],
              nearest_persona) -> int | None:
    if review is None:
        return None
    candidates = [int(p) for p in item_personas if p >= 0]
    held = holder.get(review.review_id)
    if held in candidates:
        return held
    return nearest_persona(review.text, candidates) if nearest_persona is not None else None
