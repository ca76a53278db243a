"""Persona generators, by name. `extractive` (the default) needs no LLM; `llm` arrives with issue #4."""

from __future__ import annotations

from ..encoder import TextEncoder
from ..errors import ChoiceError
from .base import PersonaGenerator

GENERATORS = ("extractive",)


def make_generator(name: str, encoder: TextEncoder, *, seed: int = 0) -> PersonaGenerator:
    if name == "extractive":
        from .extractive import ExtractiveGenerator

        return ExtractiveGenerator(encoder, seed=seed)
    raise ChoiceError("generator", name, GENERATORS)
