"""Options of the LLM persona generator, shared by `personas generate` and `personas batch`."""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import ValidationError

from ..errors import ConfigError
from ..io import describe_validation_error
from .options import FINITE_FLOAT

LLM_OPTIONS = (
    click.option("--model", envvar="P4R_LLM_MODEL", default=None, metavar="NAME",
                 help="LLM model name at the endpoint, e.g. gpt-4o-mini [env P4R_LLM_MODEL]. "
                      "The endpoint comes from OPENAI_BASE_URL and the key from OPENAI_API_KEY."),
    click.option("--base-url", default=None, metavar="URL",
                 help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 [default: env OPENAI_BASE_URL, "
                      "else OpenAI]."),
    click.option("--prompt-version", default="v1", show_default=True, help="Version of the packaged prompts."),
    click.option("--aspects/--no-aspects", default=False, show_default=True,
                 help="Stage 1: extract each review's aspects (one request per review) before synthesis."),
    click.option("--temperature", type=FINITE_FLOAT, default=0.0, show_default=True),
    click.option("--max-output-tokens", type=int, default=1500, show_default=True,
                 help="Output cap per request; an answer cut off at it counts as invalid and is retried."),
    click.option("--max-prompt-tokens", type=int, default=3000, show_default=True,
                 help="Token budget of the reviews in one prompt; above it a diverse, rating-balanced subset is used."),
    click.option("--max-review-chars", type=int, default=800, show_default=True,
                 help="Each review is cut to this length in the prompt."),
    click.option("--response-format", type=click.Choice(["auto", "json_schema", "json_object_schema", "json_object"]),
                 default="auto", show_default=True,
                 help="json_schema: OpenAI structured outputs; json_object_schema: json_object plus a schema grammar "
                      "(llama.cpp); json_object: plain JSON mode, checked afterwards. auto: the first the endpoint "
                      "accepts, in that order."),
    click.option("--repeat-penalty", type=FINITE_FLOAT, default=None,
                 help="Sampling option of llama.cpp and vLLM servers (OpenAI rejects it)."),
    click.option("--dedup-threshold", type=FINITE_FLOAT, default=0.9, show_default=True,
                 help="Personas whose embeddings have a cosine above this are merged."),
    click.option("--max-attempts", type=int, default=4, show_default=True,
                 help="Attempts per request (429, 5xx, timeouts, invalid answers) before the item fails."),
    click.option("--timeout", "timeout_s", type=FINITE_FLOAT, default=120.0, show_default=True, help="Seconds per request."),
    click.option("--rpm", type=int, default=None, help="Requests-per-minute limit."),
    click.option("--tpm", type=int, default=None, help="Tokens-per-minute limit (prompt estimate + output cap)."),
    click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Cache of answers [default: $XDG_CACHE_HOME/p4r-search/llm]."),
    click.option("--no-cache", is_flag=True, help="Neither read nor write the answer cache."),
    click.option("--prices", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                 help="Price table JSON (USD per 1M tokens) [default: the packaged OpenAI list prices]."),
)

LLM_SETTING_NAMES = ("model", "base_url", "prompt_version", "aspects", "temperature", "max_output_tokens",
                     "max_prompt_tokens", "max_review_chars", "response_format", "repeat_penalty", "dedup_threshold",
                     "max_attempts", "timeout_s", "rpm", "tpm")


def llm_options(command):
    for option in reversed(LLM_OPTIONS):
        command = option(command)
    return command


def llm_settings(options: dict, seed: int):
    """LLMSettings from the command's options; pops the options it uses."""
    from ..personas.llm import LLMSettings

    values = {name: options.pop(name) for name in LLM_SETTING_NAMES}
    if not values["model"]:
        raise ConfigError("the llm generator needs a model name: pass --model or set P4R_LLM_MODEL")
    try:
        return LLMSettings(**values, seed=seed)
    except ValidationError as exc:
        raise ConfigError(f"invalid LLM setting: {describe_validation_error(exc)}") from None


def llm_parts(options: dict):
    """The ledger and the cache, from the command's options; pops the options it uses."""
    from ..personas.llm import CostLedger, PriceTable, ResponseCache, default_cache_dir

    cache_dir, no_cache, prices = options.pop("cache_dir"), options.pop("no_cache"), options.pop("prices")
    cache = ResponseCache(None if no_cache else cache_dir or default_cache_dir())
    return CostLedger(PriceTable.load(prices)), cache
