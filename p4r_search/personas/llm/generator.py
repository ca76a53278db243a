"""The paper's offline stage with an LLM: (1) optional per-review aspects, (2) per-item persona synthesis.

`SynthesisRequest` is built without I/O (beyond stage 1, when on) and turned into personas by `finish`, so
the synchronous path and the Batch API path share the prompt, the schema and every check. After synthesis,
personas whose embeddings are near-duplicates (cosine above `dedup_threshold`) are merged, with a note.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...encoder import TextEncoder
from ...models import EvidenceSnippet, GeneratorInfo, Item, Persona, Review
from ..base import Generated, GenerationFailed, snippet
from .cache import ResponseCache
from .client import ChatClient
from .ledger import CostLedger
from .limits import RateLimiter
from .prompts import ASPECTS, SYNTHESIS, load_prompt
from .schema import (
    DraftPersona,
    InvalidOutput,
    ReviewAspects,
    aspects_schema,
    parse_aspects,
    parse_personas,
    persona_count,
    personas_schema,
)
from .selection import PromptReview, select_reviews
from .settings import LLMSettings

GENERATOR_VERSION = "1.0"
SNIPPETS_PER_PERSONA = 3


@dataclass(frozen=True)
class SynthesisRequest:
    item: Item
    reviews: list[PromptReview]
    messages: list[dict]
    schema: dict
    count: tuple[int, int]

    @property
    def evidence_ids(self) -> list[str]:
        return [r.local_id for r in self.reviews]


def describe_item(item: Item) -> str:
    lines = [f"Title: {item.title}"]
    if item.categories:
        lines.append("Categories: " + ", ".join(item.categories))
    if item.description:
        lines.append("Description: " + " ".join(item.description.split())[:1000])
    for key, value in list(item.attributes.items())[:10]:
        lines.append(f"{key}: {value if isinstance(value, str) else json.dumps(value)}")
    return "\n".join(lines)


def _aspect_line(review: PromptReview, aspects: ReviewAspects) -> str:
    qualities = "; ".join(f"{q.quality} ({q.sentiment})" for q in aspects.qualities) or "none"
    rating = f" (rating {review.review.rating:g})" if review.review.rating is not None else ""
    return f"[{review.local_id}]{rating} purpose: {aspects.purpose}; context: {aspects.context}; qualities: {qualities}"


class LLMGenerator:
    def __init__(self, settings: LLMSettings, encoder: TextEncoder, *, ledger: CostLedger | None = None,
                 cache: ResponseCache | None = None, limiter: RateLimiter | None = None):
        self.settings = settings
        self.encoder = encoder
        self.ledger = ledger or CostLedger()
        self.client = ChatClient(settings, self.ledger, cache or ResponseCache(None),
                                 limiter or RateLimiter(settings.rpm, settings.tpm))
        self.synthesis_prompt = load_prompt(SYNTHESIS, settings.prompt_version)
        self.aspects_prompt = load_prompt(ASPECTS, settings.prompt_version) if settings.aspects else None

    @property
    def info(self) -> GeneratorInfo:
        labels = [p.label for p in (self.aspects_prompt, self.synthesis_prompt) if p is not None]
        params = {**self.settings.output_params(), "embedding_model": self.encoder.model_name}
        return GeneratorInfo(name="llm", version=GENERATOR_VERSION, model=self.settings.model,
                             prompt_version="+".join(labels), params=params)

    def generate(self, item: Item, reviews: Sequence[Review]) -> Generated:
        request = self.synthesis_request(item, reviews)
        try:
            drafts, dropped = self.client.complete(
                "personas", request.messages, request.schema, "personas",
                lambda content: parse_personas(content, request.evidence_ids, request.count))
        except InvalidOutput as exc:
            raise GenerationFailed(item.item_id, f"invalid answer after {self.settings.max_attempts} attempt(s): {exc}",
                                   self.settings.max_attempts) from None
        except Exception as exc:
            if _is_api_error(exc):
                raise GenerationFailed(item.item_id, f"{type(exc).__name__}: {exc}", self.settings.max_attempts) from None
            raise
        return self.finish(request, drafts, dropped)

    def synthesis_request(self, item: Item, reviews: Sequence[Review], *, with_aspects: bool | None = None
                          ) -> SynthesisRequest:
        if not reviews:
            raise GenerationFailed(item.item_id, "the item has no reviews")
        selected = select_reviews(reviews, self.settings.max_prompt_tokens, self.settings.max_review_chars)
        if self.aspects_prompt is not None and with_aspects is not False:
            lines = [_aspect_line(r, self._aspects(item, r)) for r in selected]
        else:
            lines = [r.line() for r in selected]
        count = persona_count(len(selected))
        count_rule = "exactly 1 persona" if count == (1, 1) else f"{count[0]} to {count[1]} personas"
        messages = self.synthesis_prompt.messages(item=describe_item(item), reviews="\n".join(lines),
                                                  count_rule=count_rule)
        schema = personas_schema([r.local_id for r in selected], count)
        return SynthesisRequest(item, selected, messages, schema, count)

    def _aspects(self, item: Item, review: PromptReview) -> ReviewAspects:
        assert self.aspects_prompt is not None
        messages = self.aspects_prompt.messages(item=item.title, review=review.text)
        try:
            return self.client.complete("aspects", messages, aspects_schema(), "review_aspects", parse_aspects)
        except InvalidOutput as exc:
            raise GenerationFailed(item.item_id, f"aspects of review {review.review.review_id}: {exc}") from None

    def finish(self, request: SynthesisRequest, drafts: list[DraftPersona], dropped_ids: Sequence[str] = ()) -> Generated:
        by_local = {r.local_id: r.review for r in request.reviews}
        notes = [f"dropped evidence id {rid!r}: not a review in the prompt" for rid in dropped_ids]
        groups, merge_notes = self._merge_near_duplicates(drafts)
        notes += merge_notes
        personas = [self._persona(request, index, [drafts[i] for i in group], by_local, len(request.reviews))
                    for index, group in enumerate(groups)]
        return Generated(personas, [r.review.review_id for r in request.reviews], notes)

    def _merge_near_duplicates(self, drafts: list[DraftPersona]) -> tuple[list[list[int]], list[str]]:
        texts = [f"{d.name}. {d.description} {d.rationale}" for d in drafts]
        vectors = np.asarray(self.encoder.encode(texts), dtype=np.float64)
        similarity = vectors @ vectors.T
        groups: list[list[int]] = []
        notes = []
        for i in range(len(drafts)):
            twin = next((g for g in groups if similarity[g[0], i] > self.settings.dedup_threshold
                         or _same_words(drafts[g[0]], drafts[i])), None)
            if twin is None:
                groups.append([i])
                continue
            twin.append(i)
            notes.append(f"merged near-duplicate persona {drafts[i].name!r} into {drafts[twin[0]].name!r} "
                         f"(cosine {similarity[twin[0], i]:.3f}; threshold {self.settings.dedup_threshold}, "
                         "or the same description or rationale)")
        return groups, notes

    @staticmethod
    def _persona(request: SynthesisRequest, index: int, drafts: list[DraftPersona], by_local: dict[str, Review],
                 total: int) -> Persona:
        first = drafts[0]
        local_ids = list(dict.fromkeys(rid for d in drafts for rid in d.evidence_review_ids))
        evidence = [by_local[rid] for rid in local_ids]
        snippets = [EvidenceSnippet(review_id=r.review_id, text=snippet(r.text)) for r in evidence[:SNIPPETS_PER_PERSONA]]
        return Persona(persona_id=f"{request.item.item_id}-p{index}", name=first.name,
                       description=first.description, rationale=first.rationale,
                       evidence_review_ids=[r.review_id for r in evidence], support=min(1.0, len(evidence) / total),
                       evidence_snippets=snippets)


def _same_words(a: DraftPersona, b: DraftPersona) -> bool:
    """Two personas that differ only by name are one persona (small models repeat themselves like this)."""
    def norm(text: str) -> str:
        return " ".join(text.lower().split())

    return norm(a.description) == norm(b.description) or norm(a.rationale) == norm(b.rationale)


def _is_api_error(exc: Exception) -> bool:
    import openai

    return isinstance(exc, openai.OpenAIError)  # 401/403/404 never get here: the client raises EndpointError
