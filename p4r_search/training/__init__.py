"""Training the encoder (Persona4Rec's contrastive alignment of user histories with personas).

`train_head` learns, from training interactions only, a head that moves a user's profile next to the
persona of the item they chose next; `save_encoder` writes base model + head as a sentence-transformers
folder that every command takes through `--embedding-model`. `p4r train encoder` and `p4r eval loo` use both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..encoder import TextEncoder
from ..errors import ConfigError
from ..models import ItemPersonas, Review
from ..persona_vectors import DEFAULT_EVIDENCE_PRIOR, PersonaVectorKind, parse_kind
from ..profile import ProfileConfig
from .examples import TrainingSet, build_training_set
from .head import HeadSettings, TrainedHead, apply_head, mean_loss, ranking_accuracy, train_head
from .model import data_hash, load_head, read_card, save_encoder

__all__ = ["HeadSettings", "TrainInputs", "TrainSettings", "TrainedHead", "TrainingSet", "apply_head",
           "build_training_set", "data_hash", "fit", "load_head", "mean_loss", "ranking_accuracy", "read_card", "save_encoder",
           "train_head"]


@dataclass(frozen=True)
class TrainInputs:
    """What training may see: training interactions (user → item ids, oldest first), the reviews that may
    feed personas and profiles, the personas, and each user's hard-negative candidates."""

    sequences: Mapping[str, Sequence[str]]
    reviews: Sequence[Review]
    personas: Mapping[str, ItemPersonas]
    hard_negatives: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSettings:
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    persona_vector: PersonaVectorKind = PersonaVectorKind.EVIDENCE
    head: HeadSettings = field(default_factory=HeadSettings)
    evidence_prior: float = DEFAULT_EVIDENCE_PRIOR

    def __post_init__(self) -> None:
        object.__setattr__(self, "persona_vector", parse_kind(self.persona_vector))
        if self.evidence_prior < 0:
            raise ConfigError(f"the evidence prior must not be negative, got {self.evidence_prior}")

    def as_dict(self) -> dict:
        return {"profile": {"source": self.profile.source.value, "last_n": self.profile.last_n,
                            "gamma": self.profile.gamma},
                "persona_vector": self.persona_vector.value, "evidence_prior": self.evidence_prior,
                "head": self.head.as_dict()}


def fit(inputs: TrainInputs, encoder: TextEncoder, settings: TrainSettings,
        progress: Callable[[Iterable], Iterable] = lambda it: it) -> tuple[TrainedHead, TrainingSet, float]:
    """Embed what training needs with the base `encoder` (cache it for speed), build the examples and train.
    Returns the head, the examples and the seconds the training itself took."""
    persona_texts = [p.embedding_text for record in inputs.personas.values() for p in record.personas]
    texts = list(dict.fromkeys([*persona_texts, *(r.text for r in inputs.reviews)]))
    vectors = dict(zip(texts, encoder.encode(texts)))
    data = build_training_set(inputs.sequences, inputs.personas, inputs.reviews, profile=settings.profile,
                              kind=settings.persona_vector, hard_negatives=inputs.hard_negatives,
                              text_vectors=vectors, prior=settings.evidence_prior)
    base = np.stack([vectors[t] for t in data.texts]) if data.texts else np.zeros((0, encoder.dim), np.float32)
    started = time.perf_counter()
    head = train_head(data, base, settings.head, progress)
    return head, data, time.perf_counter() - started
