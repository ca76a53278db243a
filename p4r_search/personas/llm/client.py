"""One structured-output call to an OpenAI-compatible chat endpoint, with everything that makes it robust:
the cache, the rate limits, the cost ledger, retries with backoff, and repair turns for invalid answers.

Retries (tenacity, exponential backoff with jitter, at least any Retry-After the server sends) cover 429,
5xx, timeouts, dropped connections and invalid answers; an invalid answer is retried as a repair turn that
tells the model what was wrong. 401, 403 and 404 (a wrong key or model name) stop the run at once rather than
failing every item. The openai client's own retries are off, so each attempt is seen, counted and paid once.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import tenacity

from ...errors import ConfigError
from ...redaction import redact
from .cache import ResponseCache, cache_key
from .ledger import CostLedger
from .limits import RateLimiter
from .schema import InvalidOutput
from .selection import estimate_tokens
from .settings import FORMATS, LLMSettings

T = TypeVar("T")
RETRY_AFTER_CAP_S = 120.0
NO_KEY = "unused"  # local servers (llama.cpp, Ollama, vLLM) need no key, but the client insists on one


class Truncated(InvalidOutput):
    """The answer hit the output token cap (finish_reason "length"): cut off, so not usable."""

    def __init__(self, message: str, content: str | None):
        super().__init__(message)
        self.content = content


class EndpointError(ConfigError):
    """The endpoint refuses every request (bad key, no access, unknown model): no point going on."""


def _retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, (InvalidOutput, openai.APITimeoutError, openai.APIConnectionError)):
        return True
    return isinstance(exc, openai.APIStatusError) and (exc.status_code in (408, 409, 429) or exc.status_code >= 500)


def _refuses_format(exc: Exception) -> bool:
    """A 400, or a 5xx that names the structured-output options (llama.cpp answers 500 to json_schema)."""
    import openai

    if isinstance(exc, openai.BadRequestError):
        return True
    words = ("response_format", "json_schema", "json_object")
    return isinstance(exc, openai.InternalServerError) and any(w in str(exc).lower() for w in words)


def _split_extra(body: dict[str, Any]) -> dict[str, Any] | None:
    """Takes the non-OpenAI sampling options out of `body`: the client sends them as `extra_body`."""
    return {"repeat_penalty": body.pop("repeat_penalty")} if "repeat_penalty" in body else None


def _retry_after(exc: BaseException | None) -> float:
    response = getattr(exc, "response", None)
    try:
        return min(float(response.headers.get("retry-after", 0)), RETRY_AFTER_CAP_S) if response is not None else 0.0
    except (TypeError, ValueError):  # an HTTP date instead of seconds: fall back to the backoff
        return 0.0


class ChatClient:
    def __init__(self, settings: LLMSettings, ledger: CostLedger, cache: ResponseCache, limiter: RateLimiter):
        self.settings = settings
        self.ledger = ledger
        self.cache = cache
        self.limiter = limiter
        self._mode = FORMATS[0] if settings.response_format == "auto" else settings.response_format
        self._client = None
        self._lock = threading.Lock()

    @property
    def openai(self):
        with self._lock:
            if self._client is None:
                import openai

                base_url = self.settings.base_url or os.environ.get("OPENAI_BASE_URL")
                api_key = os.environ.get("OPENAI_API_KEY") or (NO_KEY if base_url else None)
                if api_key is None:
                    raise EndpointError("set OPENAI_API_KEY (or OPENAI_BASE_URL / --base-url for a local server)")
                self._client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                                             timeout=self.settings.timeout_s)
        return self._client

    def request_body(self, messages: list[dict], schema: dict, name: str, mode: str | None = None) -> dict[str, Any]:
        """The chat-completions body, as written into Batch API files; `_send` passes `extra_body` separately."""
        mode = mode or self._mode
        s = self.settings
        body: dict[str, Any] = {"model": s.model, "messages": messages, "temperature": s.temperature,
                                "max_tokens": s.max_output_tokens}
        if s.seed is not None:
            body["seed"] = s.seed
        if s.repeat_penalty is not None:  # llama.cpp / vLLM sampling option, not part of OpenAI's API
            body["repeat_penalty"] = s.repeat_penalty
        if mode == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": name, "schema": schema, "strict": True}}
            return body
        hint = {"role": "system", "content": "The JSON must match this JSON schema: " + json.dumps(schema)}
        body["messages"] = [messages[0], hint, *messages[1:]]
        body["response_format"] = {"type": "json_object"}
        if mode == "json_object_schema":  # llama.cpp's extension: the schema becomes a sampling grammar
            body["response_format"]["schema"] = schema
        return body

    def complete(self, stage: str, messages: list[dict], schema: dict, name: str, validate: Callable[[str], T]) -> T:
        """Send until `validate(content)` accepts an answer, within the attempt cap; returns what it returns."""
        key = cache_key(prompt=name, model=self.settings.model, params=self.settings.output_params(),
                        messages=messages, schema=schema)
        cached = self.cache.get(key)
        if cached is not None:
            try:
                result = validate(cached)
            except InvalidOutput:
                pass  # written by an older validator: ask again
            else:
                self.ledger.record_cache_hit(stage, self.settings.model)
                return result
        conversation = list(messages)
        for attempt in self._retrying():
            with attempt:
                try:
                    content = self._send(stage, conversation, schema, name)
                    result = validate(content)
                except InvalidOutput as exc:
                    content = exc.content if isinstance(exc, Truncated) else content
                    conversation = [*messages, {"role": "assistant", "content": content or ""},
                                    {"role": "user", "content": f"That answer is invalid: {exc}. "
                                                                "Answer again with only the corrected JSON."}]
                    raise
        self.cache.put(key, content)
        return result

    def _retrying(self) -> tenacity.Retrying:
        initial = self.settings.backoff_initial_s
        backoff = tenacity.wait_exponential_jitter(multiplier=initial, max=60, jitter=initial)

        def wait(state: tenacity.RetryCallState) -> float:
            return max(backoff(state), _retry_after(state.outcome.exception() if state.outcome else None))

        return tenacity.Retrying(stop=tenacity.stop_after_attempt(self.settings.max_attempts), wait=wait,
                                 retry=tenacity.retry_if_exception(_retryable), reraise=True)

    def _send(self, stage: str, messages: list[dict], schema: dict, name: str) -> str | None:
        import openai

        body = self.request_body(messages, schema, name)
        prompt_estimate = sum(estimate_tokens(m["content"]) for m in body["messages"])
        self.limiter.acquire(prompt_estimate + self.settings.max_output_tokens)
        extra = _split_extra(body)
        try:
            response = self.openai.chat.completions.create(**body, extra_body=extra)
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
            raise EndpointError(redact(f"the endpoint refused the request ({exc.status_code}): {exc.message}")) from None
        except openai.APIStatusError as exc:
            self.ledger.record_failure(stage, self.settings.model)
            if not (self.settings.response_format == "auto" and _refuses_format(exc)):
                raise
            response = self._fall_back(stage, messages, schema, name, extra, exc)
        except openai.OpenAIError:
            self.ledger.record_failure(stage, self.settings.model)
            raise
        return self._account(stage, response, prompt_estimate)

    def _fall_back(self, stage: str, messages: list[dict], schema: dict, name: str, extra, refusal: Exception):
        """The endpoint refused this structured-output form: try the next ones; keep the first that works."""
        import openai

        for mode in FORMATS[FORMATS.index(self._mode) + 1 :]:
            body = self.request_body(messages, schema, name, mode)
            _split_extra(body)
            try:
                response = self.openai.chat.completions.create(**body, extra_body=extra)
            except openai.APIStatusError as exc:
                self.ledger.record_failure(stage, self.settings.model)
                if not _refuses_format(exc):
                    raise
                continue
            self._mode = mode
            return response
        raise refusal

    def _account(self, stage: str, response, prompt_estimate: int) -> str | None:
        usage = response.usage
        choice = response.choices[0] if response.choices else None
        content = choice.message.content if choice is not None else None
        if usage is not None:
            self.ledger.record(stage, self.settings.model, usage.prompt_tokens, usage.completion_tokens)
        else:  # some servers omit usage: count an estimate rather than nothing
            self.ledger.record(stage, self.settings.model, prompt_estimate, estimate_tokens(content or ""))
        if choice is not None and choice.finish_reason == "length":
            raise Truncated(f"the answer was cut off at {self.settings.max_output_tokens} output tokens "
                            "(--max-output-tokens); write shorter texts", content)
        return content
