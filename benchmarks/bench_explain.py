"""Explain's rank: one scan (`EmbeddedBackend.rank_of`) against the generic path (an exact search of the top
1,000 hits, what a backend without `rank_of` gets), on the same index, requests and process, rounds alternating.

    .venv/bin/python benchmarks/bench_explain.py [--index benchmarks/cache/serve-50k-<key>]   # built by bench_serve.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from common import ROOT, machine, write_result
from threadpoolctl import threadpool_limits

from p4r_search import EmbeddedBackend, Recommender, UserInput
from p4r_search.encoder import Encoder


class WithoutRank:
    """The same backend without `rank_of`: the Recommender falls back to the exact search."""

    def __init__(self, backend: EmbeddedBackend):
        self._backend = backend

    def __getattr__(self, name: str):
        if name == "rank_of":
            raise AttributeError(name)
        return getattr(self._backend, name)

    def __len__(self) -> int:
        return len(self._backend)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    found = sorted((ROOT / "benchmarks" / "cache").glob("serve-50k-*"))
    ap.add_argument("--index", type=Path, default=found[-1] if found else None)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "explain.json")
    args = ap.parse_args()
    if args.index is None:
        raise SystemExit("no index: run benchmarks/bench_serve.py once (it builds the 50k index), or pass --index")
    threadpool_limits(1, user_api="blas")
    backend, encoder = EmbeddedBackend(args.index), Encoder()
    paths = {"generic (top-1,000 search)": Recommender(WithoutRank(backend), encoder=encoder),
             "rank_of (one scan)": Recommender(backend, encoder=encoder)}
    ids, rng = backend.item_ids(), np.random.default_rng(0)
    requests = [(UserInput(history=tuple(rng.choice(ids, 10))), str(rng.choice(ids))) for _ in range(args.requests)]
    answers = [[r.explain(u, i) for u, i in requests] for r in paths.values()]
    same = sum(a == b for a, b in zip(*answers))
    ms: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, recommender in paths.items():
            start = time.perf_counter()
            for user, item in requests:
                recommender.explain(user, item)
            ms[name].append((time.perf_counter() - start) / len(requests) * 1000)
    print(f"{len(backend):,} items, {args.requests} requests, identical explanations: {same}/{args.requests}\n")
    print("| path | ms per explain, each round |\n|---|---|")
    for name, values in ms.items():
        print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} |")
    write_result(args.out, {"machine": machine(), "index": str(args.index), "identical": same, "ms_per_explain": ms})


if __name__ == "__main__":
    main()
