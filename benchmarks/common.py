"""Helpers shared by the benchmark scripts: timing, the machine's description, results files."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WARMUP = 5


@contextlib.contextmanager
def timed_methods(targets: dict[str, tuple[object, str]]):
    """Temporarily wrap attributes (methods or module functions) so that the seconds spent in each are summed."""
    totals, saved = dict.fromkeys(targets, 0.0), []
    for name, (owner, attr) in targets.items():
        original = getattr(owner, attr)
        saved.append((owner, attr, original))

        def wrapper(*args, _f=original, _name=name, **kwargs):
            start = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                totals[_name] += time.perf_counter() - start

        setattr(owner, attr, wrapper)
    try:
        yield totals
    finally:
        for owner, attr, original in saved:
            setattr(owner, attr, original)


def blas_threads(count: int):
    """Limit numpy's BLAS threads: with 2 threads on a busy 2-core machine each matvec waits a scheduler tick."""
    if count <= 0:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits  # comes with scikit-learn, a dependency

    return threadpool_limits(count, user_api="blas")


def timed(fn, args: list) -> tuple[np.ndarray, list]:
    """Milliseconds per call over `args`, after WARMUP untimed calls; also the results."""
    for a in args[:WARMUP]:
        fn(a)
    ms, results = [], []
    for a in args:
        start = time.perf_counter()
        results.append(fn(a))
        ms.append((time.perf_counter() - start) * 1000)
    return np.asarray(ms), results


def timed_interleaved(fns: dict, args: list) -> dict[str, tuple[np.ndarray, list]]:
    """`timed` for several functions over the same `args`, interleaved: each argument goes to every function
    in turn (the order rotating), so a change in the machine's load falls on all of them alike."""
    names = list(fns)
    for a in args[:WARMUP]:
        for name in names:
            fns[name](a)
    ms: dict[str, list[float]] = {n: [] for n in names}
    results: dict[str, list] = {n: [] for n in names}
    for i, a in enumerate(args):
        for name in names[i % len(names):] + names[: i % len(names)]:
            start = time.perf_counter()
            results[name].append(fns[name](a))
            ms[name].append((time.perf_counter() - start) * 1000)
    return {n: (np.asarray(ms[n]), results[n]) for n in names}


def stats(ms: np.ndarray) -> dict:
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def machine() -> dict:
    """What ran the benchmark, including the load average (other jobs share this machine)."""
    versions = {p: metadata.version(p) for p in ("numpy", "usearch", "tantivy", "torch", "sentence-transformers")}
    try:
        model = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines() if line.startswith("Model name"))
    except StopIteration:
        model = platform.processor()
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "platform": platform.platform(),
            "python": platform.python_version(), "cpus": os.cpu_count(), "cpu_model": model,
            "load_average": os.getloadavg(), **versions}


def write_result(path: Path, result: dict) -> None:
    result = {**result, "finished": {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "load_average": os.getloadavg()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
