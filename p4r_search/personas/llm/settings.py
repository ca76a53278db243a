"""Settings of the LLM generator. `output_params` are those that change what the model writes: they go
into each persona's metadata, the input hash and the cache key. The rest (limits, retries) do not."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ResponseFormat = Literal["auto", "json_schema", "json_object_schema", "json_object"]
FORMATS = ("json_schema", "json_object_schema", "json_object")  # what "auto" tries, in this order


class LLMSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, description="Model name at the endpoint, e.g. gpt-4o-mini.")
    base_url: str | None = Field(default=None, description="None: the openai client reads OPENAI_BASE_URL.")
    prompt_version: str = "v1"
    aspects: bool = Field(default=False, description="Run stage 1 (per-review aspect extraction) first.")
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_output_tokens: int = Field(default=1500, ge=64)
    max_prompt_tokens: int = Field(default=3000, ge=200, description="Token budget of the reviews in one prompt.")
    max_review_chars: int = Field(default=800, ge=50)
    response_format: ResponseFormat = "auto"
    repeat_penalty: float | None = Field(default=None, gt=0, description="llama.cpp/vLLM only; OpenAI rejects it.")
    seed: int | None = 0
    dedup_threshold: float = Field(default=0.9, gt=0, le=1, description="Cosine above which personas merge.")
    max_attempts: int = Field(default=4, ge=1, le=20)
    timeout_s: float = Field(default=120.0, gt=0)
    backoff_initial_s: float = Field(default=1.0, ge=0)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)

    def output_params(self) -> dict:
        return self.model_dump(include={"aspects", "temperature", "max_output_tokens", "max_prompt_tokens",
                                        "max_review_chars", "repeat_penalty", "seed", "dedup_threshold"})
