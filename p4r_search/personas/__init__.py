"""Persona generators, by name: `extractive` (the default, no LLM: clusters whole reviews), `extractive-aspects`
(no LLM: clusters review sentences, so items with few reviews get several personas) and `llm` (any
OpenAI-compatible endpoint)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..encoder import TextEncoder
from ..errors import ChoiceError, ConfigError
from .base import Generated, GenerationFailed, PersonaGenerator

if TYPE_CHECKING:
    from .llm import LLMSettings

GENERATORS = ("extractive", "extractive-aspects", "llm")

__all__ = ["GENERATORS", "Generated", "GenerationFailed", "PersonaGenerator", "make_generator"]


def make_generator(name: str, encoder: TextEncoder, *, seed: int = 0, llm: LLMSettings | None = None,
                   **llm_parts) -> PersonaGenerator:
    """`llm_parts` (ledger, cache, limiter) go to the LLM generator. Without `llm` settings, its model comes
    from the environment variable P4R_LLM_MODEL, and the endpoint from OPENAI_BASE_URL / OPENAI_API_KEY."""
    if name == "extractive":
        from .extractive import ExtractiveGenerator

        return ExtractiveGenerator(encoder, seed=seed)
    if name == "extractive-aspects":
        from .aspects import AspectGenerator

        return AspectGenerator(encoder, seed=seed)
    if name == "llm":
        from .llm import LLMGenerator, LLMSettings

        if llm is None:
            model = os.environ.get("P4R_LLM_MODEL")
            if not model:
                raise ConfigError("the llm generator needs a model name: pass --model or set P4R_LLM_MODEL")
            llm = LLMSettings(model=model, seed=seed)
        return LLMGenerator(llm, encoder, **llm_parts)
    raise ChoiceError("generator", name, GENERATORS)
