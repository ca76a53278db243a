"""Which reviews go into a prompt: all of them when they fit the token budget, else a diverse,
rating-balanced subset.

Budgets use a conservative estimate of 3.5 characters per token (English BPE averages about 4), so no
tokenizer has to be downloaded. The subset takes reviews round-robin across rating levels (so a handful of
critical reviews is not crowded out by hundreds of happy ones), and within a level picks the review least
similar (TF-IDF cosine) to those already picked: farthest-point sampling, deterministic for a given input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...models import Review

CHARS_PER_TOKEN = 3.5


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class PromptReview:
    local_id: str
    review: Review
    text: str

    def line(self) -> str:
        rating = f" (rating {self.review.rating:g})" if self.review.rating is not None else ""
        return f"[{self.local_id}]{rating} {self.text}"


def clip(text: str, max_chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0] + "…"


def select_reviews(reviews: Sequence[Review], budget_tokens: int, max_review_chars: int) -> list[PromptReview]:
    """The reviews for one prompt, with short local ids R1.. in review-id order."""
    ordered = sorted(reviews, key=lambda r: r.review_id)
    texts = [clip(r.text, max_review_chars) for r in ordered]
    costs = [estimate_tokens(t) + 4 for t in texts]
    if sum(costs) <= budget_tokens:
        chosen = list(range(len(ordered)))
    else:
        chosen = sorted(_diverse_subset(ordered, texts, costs, budget_tokens))
    return [PromptReview(f"R{n}", ordered[i], texts[i]) for n, i in enumerate(chosen, start=1)]


def _diverse_subset(reviews: list[Review], texts: list[str], costs: list[int], budget: int) -> list[int]:
    similarity = _tfidf_similarity(texts)
    levels: dict[float | None, list[int]] = {}
    for i, review in enumerate(reviews):
        levels.setdefault(review.rating, []).append(i)
    queues = [levels[k] for k in sorted(levels, key=lambda r: (r is None, r if r is not None else 0))]
    chosen: list[int] = []
    spent = 0
    while any(queues):
        for queue in queues:
            if not queue:
                continue
            pick = _farthest(queue, chosen, similarity)
            queue.remove(pick)
            if spent + costs[pick] <= budget:
                chosen.append(pick)
                spent += costs[pick]
    return chosen or [min(range(len(reviews)), key=costs.__getitem__)]


def _farthest(candidates: list[int], chosen: list[int], similarity: np.ndarray) -> int:
    if not chosen:  # start from the most typical review of the level
        return max(candidates, key=lambda i: (similarity[i, candidates].sum(), -i))
    return min(candidates, key=lambda i: (similarity[i, chosen].max(), i))


def _tfidf_similarity(texts: list[str]) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        matrix = TfidfVectorizer(sublinear_tf=True).fit_transform(texts)
    except ValueError:  # no word survives tokenisation (e.g. emoji-only reviews)
        return np.zeros((len(texts), len(texts)))
    return (matrix @ matrix.T).toarray()
