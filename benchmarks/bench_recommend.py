"""Benchmark the embedded backend: build time, index size, query latency and HNSW recall@10.

Part 1 (synthetic unit vectors, N items x P personas): upsert time (split into its steps), index size,
and per-query latency of full-catalog kNN (HNSW), a rerank of 20 candidates, and two exact baselines
(`ExactScorer.top_k` and a raw `vectors @ q` + argpartition). Part 2 (real review embeddings): recall@10
of kNN against the exact scorer. Every ratio is taken within one run, since the machine is shared.

    .venv/bin/python benchmarks/bench_recommend.py [--sizes 10000,100000] [--real-rows 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
from usearch.index import Index

from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.backends.embedded.store import TantivyStore
from p4r_search.backends.embedded.vectors import HnswConfig, VectorCache
from p4r_search.documents import ItemDocument
from p4r_search.models import GeneratorInfo, Persona
from p4r_search.query import PersonaQuery
from p4r_search.scoring import ExactScorer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_REVIEWS = ROOT / "examples" / "reviews.jsonl"
CLOTHING_REVIEWS = Path("/work/shared/data/womens-clothing-reviews/reviews.parquet")
K, RERANK, WARMUP, HELD_OUT, REAL_PERSONAS = 10, 20, 5, 200, 5
GENERATOR = GeneratorInfo(name="bench", version="0", model="none", prompt_version="bench-1")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="catalog sizes (items), comma-separated")
    ap.add_argument("--personas", type=int, default=5, help="personas per item")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=200, help="timed queries per mode")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "recommend.json")
    ap.add_argument("--real-rows", type=int, default=20000, help="indexed review embeddings for recall (0: skip)")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / "cache")
    ap.add_argument("--blas-threads", type=int, default=1,
                    help="BLAS threads for the exact scans (0: library default; see the README)")
    ap.add_argument("--hnsw-dtype", default=HnswConfig.dtype, help="HnswConfig.dtype: f32 (default), f16 or i8")
    return ap.parse_args()


# -- documents --------------------------------------------------------------------------------------
def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_personas(count: int) -> tuple[Persona, ...]:
    return tuple(
        Persona(persona_id=f"p{i}", name=f"Persona Number{i}", description=f"Synthetic persona {i}.",
                rationale="Benchmark data.", evidence_review_ids=["r1"], support=1 / count)
        for i in range(count)
    )


def documents(ids: list[str], vectors: np.ndarray, model: str):
    """One ItemDocument per item; `vectors` is (items, personas, dim). Persona objects are shared."""
    personas = make_personas(vectors.shape[1])
    for item_id, item_vectors in zip(ids, vectors):
        yield ItemDocument(item_id=item_id, title=f"Item {item_id}", personas=personas, vectors=item_vectors,
                           generator=GENERATOR, input_hash="bench", encoder_model=model)


# -- measuring --------------------------------------------------------------------------------------
@contextlib.contextmanager
def timed_steps(targets: dict[str, tuple[type, str]]):
    """Temporarily wrap methods so that the seconds spent in each are summed."""
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


def build_index(path: Path, docs, hnsw: HnswConfig) -> dict:
    """Upsert every document in one call (as `p4r index build` does); the seconds of each step."""
    steps = {"store_commit": (TantivyStore, "commit"), "cache_apply": (VectorCache, "apply"),
             "hnsw_add": (Index, "add"), "cache_save": (VectorCache, "save")}
    backend = EmbeddedBackend(path, writable=True, exact_threshold=0, hnsw=hnsw)
    with timed_steps(steps) as totals:
        start = time.perf_counter()
        backend.upsert(docs)
        total = time.perf_counter() - start
    other = total - totals["store_commit"] - totals["cache_apply"] - totals["cache_save"]
    return {"upsert_s": total, **{f"{k}_s": v for k, v in totals.items()}, "rows_and_meta_s": other}


def open_index(path: Path, hnsw: HnswConfig) -> tuple[EmbeddedBackend, float]:
    """Open read-only and load the vector cache, as every `p4r recommend` process does."""
    start = time.perf_counter()
    backend = EmbeddedBackend(path, exact_threshold=0, hnsw=hnsw)
    backend.vectors()
    return backend, time.perf_counter() - start


def blas_threads(count: int):
    """Limit numpy's BLAS threads: with 2 threads on a busy 2-core machine each matvec waits a scheduler tick."""
    if count <= 0:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits  # comes with scikit-learn, a dependency

    return threadpool_limits(count, user_api="blas")


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


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


def stats(ms: np.ndarray) -> dict:
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def recall(got: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got, truth)]))


def summarise(timings: dict[str, tuple[np.ndarray, list]], recall_key: str) -> dict:
    """p50/p99 of each mode, its p50 speed-up over the exact scan, and the kNN modes' recall against it."""
    base_ms, truth = timings["exact-scan"]
    out = {}
    for mode, (ms, got) in timings.items():
        out[mode] = {**stats(ms), "speedup_vs_exact_scan": float(np.median(base_ms) / np.median(ms))}
        if mode.startswith("knn"):
            out[mode][recall_key] = recall(got, truth)
    return out


def raw_scan(vectors: np.ndarray):
    """The floor: one matrix-vector product over every persona row, then the top K rows."""
    def run(q: np.ndarray) -> np.ndarray:
        sims = vectors @ q
        top = np.argpartition(-sims, K - 1)[:K]
        return top[np.argsort(-sims[top])]
    return run


def search_ids(backend: EmbeddedBackend, **options):
    """Top-K item ids of `backend.search`, for a query vector or a (vector, candidate ids) pair."""
    def run(arg) -> list[str]:
        q, candidates = arg if isinstance(arg, tuple) else (arg, None)
        return [h.item_id for h in backend.search(PersonaQuery(q, k=K, candidate_ids=candidates, **options))]
    return run


def exact_top(scorer: ExactScorer):
    return lambda q: [s.item_id for s in scorer.top_k(q, K)]


# -- part 1: latency on synthetic vectors ---------------------------------------------------------------
def bench_size(n: int, args: argparse.Namespace, hnsw: HnswConfig) -> dict:
    rng = np.random.default_rng(args.seed + n)
    ids = [f"i{i:07d}" for i in range(n)]
    vectors = unit_rows(rng, n * args.personas, args.dim).reshape(n, args.personas, args.dim)
    queries = list(unit_rows(rng, args.queries, args.dim))
    candidates = [tuple(rng.choice(ids, RERANK, replace=False)) for _ in queries]
    tmp = Path(tempfile.mkdtemp(prefix="p4r-bench-"))
    try:
        print(f"[{n} items] upserting {n * args.personas} rows ...", flush=True)
        build = build_index(tmp, documents(ids, vectors, "bench-random"), hnsw)
        print(f"[{n} items] upsert {build['upsert_s']:.1f}s", flush=True)
        size = dir_size(tmp)
        backend, open_s = open_index(tmp, hnsw)
        scorer = ExactScorer(ids, list(vectors))
        flat = vectors.reshape(-1, args.dim)
        with blas_threads(args.blas_threads):
            modes = {
                "knn": timed(search_ids(backend, mode="knn"), queries),
                "rerank-20": timed(search_ids(backend, mode="exact"), list(zip(queries, candidates))),
                "exact (backend)": timed(search_ids(backend, mode="exact"), queries),
                "exact-scan": timed(exact_top(scorer), queries),
                "raw-matmul": timed(raw_scan(flat), queries),
            }
        if args.blas_threads > 0:
            modes["exact-scan, default BLAS threads"] = timed(exact_top(scorer), queries)
        del backend
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"items": n, "rows": n * args.personas, "build": build, "open_s": open_s,
           "index_bytes": size, "raw_float32_bytes": n * args.personas * args.dim * 4}
    out["index_vs_raw"] = size / out["raw_float32_bytes"]
    return {**out, "modes": summarise(modes, "recall_at_10_random_vectors")}


# -- part 2: recall on real review embeddings ---------------------------------------------------------
def load_texts(count: int) -> list[str]:
    """Distinct review texts: the examples first, then the clothing reviews ordered by item."""
    texts = [json.loads(line)["text"] for line in EXAMPLE_REVIEWS.read_text().splitlines() if line.strip()]
    if count > len(texts):
        import pandas as pd

        frame = pd.read_parquet(CLOTHING_REVIEWS).sort_values("Clothing ID", kind="stable")
        texts += [t for t in frame["Review Text"].dropna() if t.strip()]
    texts = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if len(texts) < count:
        raise SystemExit(f"only {len(texts)} distinct review texts; ask for fewer --real-rows")
    return texts[:count]


def embed_cached(texts: list[str], cache_dir: Path, chunk: int = 2000) -> tuple[np.ndarray, str]:
    """Encode in chunks, each cached as .npy keyed by model and texts (a longer run reuses a shorter one's)."""
    from p4r_search.encoder import Encoder

    encoder = Encoder()
    cache_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in range(0, len(texts), chunk):
        batch = texts[start : start + chunk]
        key = hashlib.sha256("\x00".join([encoder.model_name, *batch]).encode()).hexdigest()[:20]
        path = cache_dir / f"emb-{key}.npy"
        if not path.exists():
            t = time.perf_counter()
            np.save(path, encoder.encode(batch))
            print(f"  encoded {start + len(batch)}/{len(texts)} texts ({time.perf_counter() - t:.0f}s)", flush=True)
        parts.append(np.load(path))
    return np.concatenate(parts), encoder.model_name


def bench_real(args: argparse.Namespace, hnsw: HnswConfig) -> dict:
    rows = args.real_rows // REAL_PERSONAS * REAL_PERSONAS
    texts = load_texts(rows + HELD_OUT)
    vectors, model = embed_cached(texts, args.cache_dir)
    held = np.zeros(len(texts), bool)
    held[np.random.default_rng(args.seed).choice(len(texts), HELD_OUT, replace=False)] = True
    queries, indexed = list(vectors[held]), vectors[~held].reshape(-1, REAL_PERSONAS, vectors.shape[1])
    ids = [f"t{i:06d}" for i in range(len(indexed))]
    tmp = Path(tempfile.mkdtemp(prefix="p4r-bench-real-"))
    try:
        build = build_index(tmp, documents(ids, indexed, model), hnsw)
        backend, _ = open_index(tmp, hnsw)
        scorer = ExactScorer(ids, list(indexed))
        with blas_threads(args.blas_threads):
            timings = {"exact-scan": timed(exact_top(scorer), queries)}
            for nc in (100, K):
                knn = search_ids(backend, mode="knn", num_candidates=nc)
                timings[f"knn (num_candidates={nc})"] = timed(knn, queries)
        del backend
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"items": len(ids), "rows": rows, "queries": HELD_OUT, "model": model, "upsert_s": build["upsert_s"],
            "modes": summarise(timings, "recall_at_10")}


# -- report ---------------------------------------------------------------------------------------------
def machine() -> dict:
    versions = {p: metadata.version(p) for p in ("numpy", "usearch", "tantivy")}
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(), **versions}


def table(synthetic: list[dict], real: dict | None) -> str:
    lines = ["| catalog | mode | p50 ms | p99 ms | speed-up vs exact scan (p50) | recall@10 |",
             "|---|---|---:|---:|---:|---:|"]
    groups = [(f"{r['items']:,} items x {r['rows'] // r['items']} (random)", r["modes"]) for r in synthetic]
    if real:
        groups.append((f"{real['items']:,} items x 5 (real text)", real["modes"]))
    for label, modes in groups:
        for mode, m in modes.items():
            rec = m.get("recall_at_10", m.get("recall_at_10_random_vectors"))
            rec_s = "" if rec is None else f"{rec:.3f}" + ("" if "recall_at_10" in m else " (worst case)")
            lines.append(f"| {label} | {mode} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
                         f"{m['speedup_vs_exact_scan']:.1f}x | {rec_s} |")
    return "\n".join(lines)


def build_table(synthetic: list[dict]) -> str:
    lines = ["| items | rows | upsert s | store commit s | HNSW add s | cache save s | rows+meta s | open s "
             "| index MB | raw MB | index/raw |", "|---:|---:|" + "---:|" * 9]
    for r in synthetic:
        b = r["build"]
        lines.append(f"| {r['items']:,} | {r['rows']:,} | {b['upsert_s']:.1f} | {b['store_commit_s']:.1f} | "
                     f"{b['hnsw_add_s']:.1f} | {b['cache_save_s']:.1f} | {b['rows_and_meta_s']:.1f} | "
                     f"{r['open_s']:.2f} | "
                     f"{r['index_bytes'] / 1e6:.0f} | {r['raw_float32_bytes'] / 1e6:.0f} | {r['index_vs_raw']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    hnsw = HnswConfig(dtype=args.hnsw_dtype)
    info = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(), "hnsw": hnsw.__dict__,
            "args": {k: str(v) for k, v in vars(args).items()}}
    synthetic = [bench_size(int(n), args, hnsw) for n in args.sizes.split(",") if n.strip()]
    real = bench_real(args, hnsw) if args.real_rows > 0 else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**info, "synthetic": synthetic, "real": real}, indent=2))
    print(f"\n{info['date']} on {json.dumps(info['machine'])}\n")
    print(table(synthetic, real), "\n")
    print(build_table(synthetic))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
