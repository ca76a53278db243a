"""The cost ledger: requests and tokens in and out, per stage and model, priced with a price table.

Thread-safe, since requests finish on worker threads. Cache hits are counted but cost nothing.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...errors import ConfigError, InputError
from ...io import describe_validation_error


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0, description="USD per 1M prompt tokens")
    output: float = Field(ge=0, description="USD per 1M completion tokens")


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: dict[str, Price]
    batch_discount: float = Field(default=0.5, ge=0, le=1)
    comment: str | None = Field(default=None, alias="_comment")

    def price(self, model: str) -> Price | None:
        return self.models.get(model) or self.models.get("*")

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> PriceTable:
        if path is None:
            text = resources.files(__package__).joinpath("prices.json").read_text("utf-8")
            return cls.model_validate_json(text)
        try:
            return cls.model_validate(json.loads(Path(path).read_text("utf-8")))
        except OSError as exc:
            raise InputError(str(path), None, exc.strerror or str(exc)) from None
        except json.JSONDecodeError as exc:
            raise InputError(str(path), exc.lineno, f"malformed JSON: {exc.msg}") from None
        except ValidationError as exc:
            raise InputError(str(path), None, describe_validation_error(exc)) from None


@dataclass
class LedgerLine:
    stage: str
    model: str
    requests: int = 0
    cache_hits: int = 0
    failed_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0


class CostLedger:
    def __init__(self, prices: PriceTable | None = None):
        self.prices = prices or PriceTable.load()
        self._lines: dict[tuple[str, str], LedgerLine] = {}
        self._lock = threading.Lock()

    def _line(self, stage: str, model: str) -> LedgerLine:
        return self._lines.setdefault((stage, model), LedgerLine(stage, model))

    def record(self, stage: str, model: str, prompt_tokens: int, completion_tokens: int, *, batch: bool = False) -> None:
        """One answered request (valid or not: an invalid answer is paid for too)."""
        price = self.prices.price(model)
        with self._lock:
            line = self._line(stage, model)
            line.requests += 1
            line.prompt_tokens += prompt_tokens
            line.completion_tokens += completion_tokens
            if price is None or line.cost_usd is None:
                line.cost_usd = None
            else:
                factor = self.prices.batch_discount if batch else 1.0
                line.cost_usd += factor * (prompt_tokens * price.input + completion_tokens * price.output) / 1e6

    def record_cache_hit(self, stage: str, model: str) -> None:
        with self._lock:
            self._line(stage, model).cache_hits += 1

    def record_failure(self, stage: str, model: str) -> None:
        """A request that got no answer (429, 5xx, timeout): nothing to pay, but worth counting."""
        with self._lock:
            self._line(stage, model).failed_requests += 1

    @property
    def total_cost(self) -> float | None:
        with self._lock:
            costs = [line.cost_usd for line in self._lines.values()]
        return None if any(c is None for c in costs) else sum(costs)

    def priced(self, model: str) -> bool:
        return self.prices.price(model) is not None

    def lines(self) -> list[LedgerLine]:
        with self._lock:
            return [LedgerLine(**asdict(line)) for line in self._lines.values()]

    def to_dict(self) -> dict:
        lines = self.lines()
        return {
            "lines": [asdict(line) for line in lines],
            "prompt_tokens": sum(line.prompt_tokens for line in lines),
            "completion_tokens": sum(line.completion_tokens for line in lines),
            "requests": sum(line.requests for line in lines),
            "cache_hits": sum(line.cache_hits for line in lines),
            "cost_usd": self.total_cost,
        }

    def table(self) -> str:
        rows = ["stage        model                     requests  cached  failed  tokens in  tokens out   cost USD"]
        for line in self.lines():
            cost = "unpriced" if line.cost_usd is None else f"{line.cost_usd:.4f}"
            rows.append(
                f"{line.stage:<12} {line.model[:25]:<25} {line.requests:>8} {line.cache_hits:>7} {line.failed_requests:>7}"
                f" {line.prompt_tokens:>10} {line.completion_tokens:>11} {cost:>10}"
            )
        return "\n".join(rows)


def check_budget(ledger: CostLedger, model: str, max_cost: float | None) -> None:
    if max_cost is not None and not ledger.priced(model):
        raise ConfigError(
            f"--max-cost needs a price for model {model!r}; add it (or a \"*\" entry) to a price table and pass --prices FILE"
        )
