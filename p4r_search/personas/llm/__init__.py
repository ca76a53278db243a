"""LLM persona generation through any OpenAI-compatible endpoint (OpenAI, Azure, vLLM, Ollama, llama.cpp)."""

from .cache import ResponseCache, default_cache_dir
from .generator import LLMGenerator, SynthesisRequest
from .ledger import CostLedger, PriceTable
from .limits import RateLimiter
from .settings import LLMSettings

__all__ = ["CostLedger", "LLMGenerator", "LLMSettings", "PriceTable", "RateLimiter", "ResponseCache",
           "SynthesisRequest", "default_cache_dir"]
