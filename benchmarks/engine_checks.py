"""Issue 12's engine checks, run by `bench_recommend.py --engine-checks` beside the usual catalog figures.

- **Open**: a read-only `EmbeddedBackend` open plus its first `vectors()` call (what a service pays before
  its first query), warm page cache, median of 3, for: the engine before issue 12 (its `vectors.py`, taken
  from git at BEFORE) on the folder layout it wrote (an f32 graph holding the only float32 copy), today's
  engine on that same old folder, and today's engine on today's layout.
- **Build**: HNSW insertion rows/s of the old default config and of today's default on the same rows (the
  first `--compare-rows` rows of the catalog), each with its recall@10 against the exact scan.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
from common import ROOT, dir_size, stats, timed
from usearch.index import Index

from p4r_search.backends import embedded
from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.backends.embedded.layout import HNSW, PAYLOADS, ROWS, HnswConfig, read_folder
from p4r_search.scoring import ExactScorer

BEFORE = "380eecc"  # the last commit before issue 12's engine work
OLD_CONFIG = HnswConfig(connectivity=16, expansion_add=128, expansion_search=64, dtype="f32")  # the default then
OPEN_REPEATS = 3


# -- open ---------------------------------------------------------------------------------------------
def engine_before() -> types.ModuleType:
    """vectors.py as of BEFORE, imported as a module of the package (so that its relative imports resolve)."""
    source = subprocess.run(["git", "show", f"{BEFORE}:p4r_search/backends/embedded/vectors.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp(prefix="p4r-before-")) / "vectors.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("p4r_search.backends.embedded._vectors_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def old_layout_copy(index: Path, out: Path, dim: int) -> Path:
    """A copy of `index` with the vector folder as written before issue 12: per-row item ids in rows.npz and
    the float32 vectors only inside an f32 graph. The graph is built with expansion_add 16 to save time:
    opening reads the same bytes (same rows and connectivity) whatever the links' quality."""
    if (out / "done").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copytree(index / "store", out / "store")
    source = next(index.glob("vectors-*"))
    folder = out / source.name
    folder.mkdir()
    rows, _ = read_folder(source, dim, HnswConfig(), writable=False)
    graph = Index(ndim=dim, metric="cos", dtype="f32", connectivity=OLD_CONFIG.connectivity, expansion_add=16)
    graph.add(rows.keys, np.asarray(rows.vectors), threads=os.cpu_count() or 1)
    graph.save(str(folder / HNSW))
    np.savez(folder / ROWS, keys=rows.keys, items=np.char.encode(rows.row_items(), "utf-8"),
             payload_offsets=rows.payload_offsets)
    shutil.copy(source / PAYLOADS, folder / PAYLOADS)
    (out / "done").write_text("")
    return out


def open_seconds(path: Path, config: HnswConfig, before: types.ModuleType | None = None) -> dict:
    """Seconds to open read-only and load the vectors (after one untimed open), and the first query after."""
    def once() -> tuple[float, float]:
        start = time.perf_counter()
        backend = EmbeddedBackend(path, exact_threshold=0, hnsw=config)
        cache = backend.vectors()
        opened = time.perf_counter() - start
        cache.scorer.top_k(np.asarray(cache.vectors[0]), 10)  # the first exact scan touches every vector
        return opened, time.perf_counter() - start - opened

    patch = mock.patch.object(embedded, "VectorCache", _Before(before)) if before else contextlib.nullcontext()
    with patch:
        once()
        runs = [once() for _ in range(OPEN_REPEATS)]
    return {"open_s": float(np.median([r[0] for r in runs])), "open_runs_s": [r[0] for r in runs],
            "first_exact_scan_s": float(np.median([r[1] for r in runs])),
            "vector_folder_bytes": dir_size(next(path.glob("vectors-*")))}


class _Before:
    """Stands in for VectorCache in EmbeddedBackend: loads with the engine of BEFORE."""

    def __init__(self, module: types.ModuleType):
        self.module = module

    def load(self, folder, dim, config, writable=True):
        return self.module.VectorCache.load(folder, dim, config)


def open_checks(index: Path, dim: int, cache_dir: Path) -> dict:
    old = old_layout_copy(index, cache_dir / f"{index.name}-old-layout", dim)
    return {
        "before, old layout (f32 graph, rows read back with Index.get)": open_seconds(old, OLD_CONFIG, engine_before()),
        "now, old layout (still readable)": open_seconds(old, OLD_CONFIG),
        "now, new layout (mapped vectors.npy + i8 graph view)": open_seconds(index, HnswConfig()),
    }


# -- build ----------------------------------------------------------------------------------------------
def build_checks(ids: list[str], vectors: np.ndarray, queries: np.ndarray, model: str, rows: int) -> dict:
    """Both configs on the same first `rows` rows; recall@10 of each against the exact scan of those rows."""
    from bench_recommend import NUM_CANDIDATES, PERSONAS, build_index, documents, recall, reference, search_ids

    items = rows // PERSONAS
    ids, vectors = ids[:items], vectors[:items]
    qs = list(queries)
    truth = timed(reference(ExactScorer(ids, list(vectors))), qs)
    out = {"rows": items * PERSONAS, "exact_scan": stats(truth[0])}
    wider = replace(OLD_CONFIG, expansion_search=HnswConfig().expansion_search)  # the old graph, searched as wide
    searched = {"before (f32, expansion_add 128, expansion_search 64)": (OLD_CONFIG, [OLD_CONFIG, wider]),
                "now (default HnswConfig)": (HnswConfig(), [HnswConfig()])}
    for label, (config, search_configs) in searched.items():
        path = Path(tempfile.mkdtemp(prefix="p4r-bench-build-"))
        try:
            build = build_index(path, documents(ids, vectors, model), config, items * PERSONAS)
            curves = {}
            for sc in search_configs:
                backend = EmbeddedBackend(path, exact_threshold=0, hnsw=sc)
                for nc in NUM_CANDIDATES:
                    ms, got = timed(search_ids(backend, mode="knn", num_candidates=nc), qs)
                    curves[f"expansion_search={sc.expansion_search}, num_candidates={nc}"] = {
                        **stats(ms), "recall_at_10": recall(got, truth[1])}
            out[label] = {"config": config.__dict__, "hnsw_add_s": build["hnsw_add_s"],
                          "hnsw_rows_per_s": build["hnsw_rows_per_s"], "upsert_s": build["upsert_s"], "curves": curves}
        finally:
            shutil.rmtree(path, ignore_errors=True)
    return out


# -- report ---------------------------------------------------------------------------------------------
def open_table(checks: dict) -> str:
    lines = ["| open (read-only EmbeddedBackend + first vectors()) | median s | runs s | then first exact scan s | vector folder MB |",
             "|---|---:|---|---:|---:|"]
    for label, m in checks.items():
        runs = ", ".join(f"{s:.3f}" for s in m["open_runs_s"])
        lines.append(f"| {label} | {m['open_s']:.3f} | {runs} | {m['first_exact_scan_s']:.3f} | "
                     f"{m['vector_folder_bytes'] / 1e6:.0f} |")
    return "\n".join(lines)


def build_table(checks: dict) -> str:
    lines = [f"Same {checks['rows']:,} rows; exact scan p50 {checks['exact_scan']['p50_ms']:.2f} ms.", "",
             "| config | HNSW add s | rows/s | search | p50 ms | p99 ms | recall@10 |", "|---|---:|---:|---|---:|---:|---:|"]
    for label, m in checks.items():
        if not isinstance(m, dict) or "curves" not in m:
            continue
        for i, (search, c) in enumerate(m["curves"].items()):
            head = f"| {label} | {m['hnsw_add_s']:.1f} | {m['hnsw_rows_per_s']:,.0f} |" if i == 0 else "| | | |"
            lines.append(f"{head} {search} | {c['p50_ms']:.2f} | {c['p99_ms']:.2f} | {c['recall_at_10']:.3f} |")
    return "\n".join(lines)
