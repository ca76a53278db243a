"""One actor for the whole cluster: the LLM's rate limits and the cost ledger.

Every generation worker asks it before each request and tells it what each answer cost, so RPM/TPM limits
and the --max-cost cap hold across all workers and nodes, not per worker. The actor never sleeps: it answers
how long to wait, and the worker waits, so one slow caller never blocks the others' bookkeeping.
"""

from __future__ import annotations

import time

import ray

from ..personas.llm.ledger import CostLedger, PriceTable
from ..personas.llm.limits import WINDOW_S, RateLimiter


@ray.remote(num_cpus=0)
class Coordinator:
    def __init__(self, rpm: int | None, tpm: int | None, prices: PriceTable | None):
        self.clock = _ManualClock()
        self.limiter = RateLimiter(rpm, tpm, clock=self.clock.now, sleep=self.clock.refuse)
        self.ledger = CostLedger(prices)
        self.grants: list[float] = []
        self.waited = 0.0

    def try_acquire(self, tokens: int) -> float:
        """0 when the request may go now (it is counted), else the seconds to wait before asking again."""
        try:
            self.limiter.acquire(tokens)
        except _MustWait as wait:
            return wait.seconds
        self.grants.append(time.monotonic())
        return 0.0

    def note_wait(self, seconds: float) -> None:
        self.waited += seconds

    def record(self, stage: str, model: str, prompt_tokens: int, completion_tokens: int, batch: bool = False) -> None:
        self.ledger.record(stage, model, prompt_tokens, completion_tokens, batch=batch)

    def record_cache_hit(self, stage: str, model: str) -> None:
        self.ledger.record_cache_hit(stage, model)

    def record_failure(self, stage: str, model: str) -> None:
        self.ledger.record_failure(stage, model)

    def total_cost(self) -> float | None:
        return self.ledger.total_cost

    def ledger_state(self) -> tuple[dict, str]:
        return self.ledger.to_dict(), self.ledger.table()

    def rate_limit_state(self) -> dict:
        return {"rpm": self.limiter.rpm, "tpm": self.limiter.tpm, "requests": len(self.grants),
                "busiest_minute": busiest_window(self.grants), "waited_s": round(self.waited, 3)}


def busiest_window(times: list[float], window: float = WINDOW_S) -> int:
    """The most grants inside any `window` seconds."""
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


class _MustWait(Exception):
    def __init__(self, seconds: float):
        self.seconds = seconds


class _ManualClock:
    """RateLimiter's clock inside the actor: real time, and a `sleep` that hands the wait to the caller."""

    now = staticmethod(time.monotonic)

    @staticmethod
    def refuse(seconds: float) -> None:
        raise _MustWait(seconds)


class RemoteLimiter:
    """What `ChatClient` calls as its limiter, on a worker: asks the coordinator, waits here."""

    def __init__(self, coordinator):
        self.coordinator = coordinator

    def acquire(self, tokens: int) -> float:
        waited = 0.0
        while (delay := ray.get(self.coordinator.try_acquire.remote(tokens))) > 0:
            time.sleep(delay)
            waited += delay
        if waited:
            self.coordinator.note_wait.remote(waited)
        return waited


class RemoteLedger:
    """What `ChatClient` records into, on a worker: every entry lands in the coordinator's ledger before
    the call returns, so the cost cap sees it and the final ledger misses nothing."""

    def __init__(self, coordinator):
        self.coordinator = coordinator

    def record(self, stage: str, model: str, prompt_tokens: int, completion_tokens: int, *, batch: bool = False) -> None:
        ray.get(self.coordinator.record.remote(stage, model, prompt_tokens, completion_tokens, batch))

    def record_cache_hit(self, stage: str, model: str) -> None:
        ray.get(self.coordinator.record_cache_hit.remote(stage, model))

    def record_failure(self, stage: str, model: str) -> None:
        ray.get(self.coordinator.record_failure.remote(stage, model))

    @property
    def total_cost(self) -> float | None:
        return ray.get(self.coordinator.total_cost.remote())
