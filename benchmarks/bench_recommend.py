"""Benchmark the embedded backend on real review embeddings: build, size, query latency, recall@10.

Catalogs, each indexed with `EmbeddedBackend.upsert` (as `p4r index build` does):
- `real`: 4,000 items x 5 personas of purely real review embeddings (20,000 rows, all-MiniLM-L6-v2);
- `50k` and `500k` (10,000 and 100,000 items x 5): the real rows plus perturbed copies of them
  (each copy row = normalise(v + 0.329 z), z ~ N(0, I/384), so cos(copy, original) ~ 0.95);
- `500k-mix`: the real rows plus interpolated rows normalise(v_r + v_s), s a random row within 50
  places of r (rows are ordered by item, so s is mostly a review of the same or a similar item).
Queries are 200 held-out real reviews. Every mode is timed against the exact numpy scan (`ExactScorer`)
of the same run; recall@10 is against that scan. See benchmarks/README.md.

    .venv/bin/python benchmarks/bench_recommend.py [--catalogs real,50k,500k]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import numpy as np
from common import ROOT, blas_threads, dir_size, machine, stats, timed, timed_methods, write_result
from usearch.index import Index

from p4r_search.backends import embedded
from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.backends.embedded.store import FORMAT_VERSION, TantivyStore
from p4r_search.backends.embedded.vectors import HnswConfig, VectorCache
from p4r_search.documents import ItemDocument
from p4r_search.models import GeneratorInfo, Persona
from p4r_search.query import PersonaQuery
from p4r_search.scoring import ExactScorer

EXAMPLE_REVIEWS = ROOT / "examples" / "reviews.jsonl"
CLOTHING_REVIEWS = Path("/work/shared/data/womens-clothing-reviews/reviews.parquet")
K, RERANK, HELD_OUT, PERSONAS, REAL_ROWS = 10, 20, 200, 5, 20_000
NOISE = 0.329  # cos(v, normalise(v + NOISE z)) ~ 1 / sqrt(1 + NOISE^2) = 0.95 for |z| ~ 1
MIX_WINDOW = 50
CATALOGS = {"real": (REAL_ROWS, "real"), "50k": (50_000, "noise"), "500k": (500_000, "noise"),
            "500k-mix": (500_000, "mix")}
NUM_CANDIDATES = (10, 20, 50, 100, 200, 500)  # above expansion_search (128), num_candidates widens the HNSW search
GENERATOR = GeneratorInfo(name="bench", version="0", model="none", prompt_version="bench-1")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalogs", default="real,50k,500k,500k-mix", help=f"comma-separated, of {', '.join(CATALOGS)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "recommend.json")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / "cache")
    ap.add_argument("--reuse-min-rows", type=int, default=200_000,
                    help="catalogs of at least this many rows are built once and kept under --cache-dir")
    ap.add_argument("--rebuild", action="store_true", help="build cached indexes again")
    ap.add_argument("--blas-threads", type=int, default=1, help="BLAS threads for the scans (0: library default)")
    ap.add_argument("--hnsw-dtype", default=HnswConfig.dtype, help="HnswConfig.dtype: f32 (default), f16 or i8")
    ap.add_argument("--connectivity", type=int, default=HnswConfig.connectivity, help="HnswConfig.connectivity (M)")
    ap.add_argument("--engine-checks", action="store_true",
                    help="also time opening (before/after issue 12) and HNSW builds (old vs new config); engine_checks.py")
    ap.add_argument("--compare-rows", type=int, default=100_000, help="rows built with both configs for --engine-checks")
    return ap.parse_args()


# -- data -------------------------------------------------------------------------------------------
def load_texts(count: int) -> list[str]:
    """Distinct review texts: the examples first, then the clothing reviews ordered by item."""
    texts = [json.loads(line)["text"] for line in EXAMPLE_REVIEWS.read_text().splitlines() if line.strip()]
    if count > len(texts):
        import pandas as pd

        frame = pd.read_parquet(CLOTHING_REVIEWS).sort_values("Clothing ID", kind="stable")
        texts += [t for t in frame["Review Text"].dropna() if t.strip()]
    texts = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if len(texts) < count:
        raise SystemExit(f"only {len(texts)} distinct review texts")
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


def real_rows(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    """(indexed real rows in review order, held-out query rows, model name)."""
    texts = load_texts(REAL_ROWS + HELD_OUT)
    vectors, model = embed_cached(texts, args.cache_dir)
    held = np.zeros(len(texts), bool)
    held[np.random.default_rng(args.seed).choice(len(texts), HELD_OUT, replace=False)] = True
    return vectors[~held], vectors[held], model


def catalog_rows(real: np.ndarray, rows: int, kind: str, seed: int) -> np.ndarray:
    """The real rows, then synthetic copies of them (copy c of row r follows all of copy c-1) up to `rows`:
    `noise`: normalise(v_r + NOISE z); `mix`: normalise(v_r + v_s), s within MIX_WINDOW rows of r."""
    rng = np.random.default_rng(seed + 1)
    parts, have = [real[:rows]], min(rows, len(real))
    while have < rows:
        take = min(len(real), rows - have)
        if kind == "mix":
            partner = (np.arange(take) + rng.integers(1, MIX_WINDOW + 1, take)) % len(real)
            copy = real[:take] + real[partner]
        else:
            copy = real[:take] + NOISE * rng.standard_normal((take, real.shape[1]), dtype=np.float32) / np.sqrt(real.shape[1])
        parts.append(copy / np.linalg.norm(copy, axis=1, keepdims=True))
        have += take
    return np.concatenate(parts).astype(np.float32)


def documents(ids: list[str], vectors: np.ndarray, model: str):
    """One ItemDocument per item; `vectors` is (items, personas, dim). Persona objects are shared."""
    personas = tuple(
        Persona(persona_id=f"p{i}", name=f"Persona Number{i}", description=f"Benchmark persona {i}.",
                rationale="Benchmark data.", evidence_review_ids=["r1"], support=1 / vectors.shape[1])
        for i in range(vectors.shape[1])
    )
    for item_id, item_vectors in zip(ids, vectors):
        yield ItemDocument(item_id=item_id, title=f"Item {item_id}", personas=personas, vectors=item_vectors,
                           generator=GENERATOR, input_hash="bench", encoder_model=model)


# -- building -------------------------------------------------------------------------------------------
def build_index(path: Path, docs, hnsw: HnswConfig, rows: int) -> dict:
    """Upsert every document in one call; the seconds of each step (wrapped with timers)."""
    steps = {"store_commit": (TantivyStore, "commit"), "pending_write": (embedded, "write_pending"),
             "hnsw_add": (Index, "add"), "cache_save": (VectorCache, "save")}
    backend = EmbeddedBackend(path, writable=True, exact_threshold=0, hnsw=hnsw)
    with timed_methods(steps) as totals:
        start = time.perf_counter()
        backend.upsert(docs)
        total = time.perf_counter() - start
    out = {"upsert_s": total, **{f"{k}_s": v for k, v in totals.items()}}
    out["other_s"] = total - sum(totals.values())
    out["store_rows_per_s"] = rows / totals["store_commit"]
    out["rows_per_s_without_hnsw"] = rows / (total - totals["hnsw_add"])
    out["hnsw_rows_per_s"] = rows / totals["hnsw_add"]
    return out


def sizes(path: Path, rows: int, dim: int) -> dict:
    cache = next(path.glob("vectors-*"))
    out = {"index_bytes": dir_size(path), "raw_float32_bytes": rows * dim * 4, "store_bytes": dir_size(path / "store"),
           **{f"{f.name}_bytes": f.stat().st_size for f in cache.iterdir()}}
    out["index_vs_raw"] = out["index_bytes"] / out["raw_float32_bytes"]
    return out


def prepared_index(name: str, ids: list[str], vectors: np.ndarray, model: str, args, hnsw: HnswConfig):
    """(index folder, build figures, whether it is temporary); large ones are built once and cached."""
    rows = vectors.shape[0] * vectors.shape[1]
    keep = rows >= args.reuse_min_rows
    if keep:
        key = hashlib.sha256(json.dumps([name, rows, args.seed, NOISE, FORMAT_VERSION, hnsw.__dict__,
                                         metadata.version("usearch"), vectors[:, 0, :8].tolist()[:50]]).encode())
        path = args.cache_dir / f"index-{name}-{key.hexdigest()[:12]}"
        if (path / "build.json").exists() and not args.rebuild:
            print(f"[{name}] reusing {path}", flush=True)
            return path, {**json.loads((path / "build.json").read_text()), "reused": True}, False
        shutil.rmtree(path, ignore_errors=True)
    else:
        path = Path(tempfile.mkdtemp(prefix=f"p4r-bench-{name}-"))
    print(f"[{name}] upserting {rows:,} rows ...", flush=True)
    build = {**build_index(path, documents(ids, vectors, model), hnsw, rows), **sizes(path, rows, vectors.shape[2]),
             "built": time.strftime("%Y-%m-%d %H:%M %Z")}
    print(f"[{name}] upsert {build['upsert_s']:.1f}s (HNSW {build['hnsw_add_s']:.1f}s)", flush=True)
    if keep:
        (path / "build.json").write_text(json.dumps(build, indent=2))  # outside the engine's files
        build = {**build, "reused": False}
    return path, build, not keep


# -- querying -------------------------------------------------------------------------------------------
def search_ids(backend: EmbeddedBackend, **options):
    """Top-K item ids of `backend.search`, for a query vector or a (vector, candidate ids) pair."""
    def run(arg) -> list[str]:
        q, candidates = arg if isinstance(arg, tuple) else (arg, None)
        return [h.item_id for h in backend.search(PersonaQuery(q, k=K, candidate_ids=candidates, **options))]
    return run


def reference(scorer: ExactScorer):
    def run(arg) -> list[str]:
        q, candidates = arg if isinstance(arg, tuple) else (arg, None)
        return [s.item_id for s in scorer.top_k(q, K, candidates=candidates)]
    return run


def raw_scan(vectors: np.ndarray):
    """The floor of any exact scan: one matrix-vector product over every persona row, then the top K rows."""
    def run(q: np.ndarray) -> np.ndarray:
        sims = vectors @ q
        top = np.argpartition(-sims, K - 1)[:K]
        return top[np.argsort(-sims[top])]
    return run


def recall(got: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got, truth)]))


def bench_catalog(name: str, real: np.ndarray, queries: np.ndarray, model: str, args, hnsw: HnswConfig) -> dict:
    rows = catalog_rows(real, *CATALOGS[name], args.seed)
    vectors = rows.reshape(-1, PERSONAS, rows.shape[1])
    ids = [f"i{i:07d}" for i in range(len(vectors))]
    rng = np.random.default_rng(args.seed + 2)
    qs = list(queries)
    reranks = [(q, tuple(rng.choice(ids, RERANK, replace=False))) for q in qs]
    path, build, temporary = prepared_index(name, ids, vectors, model, args, hnsw)
    try:
        start = time.perf_counter()
        backend = EmbeddedBackend(path, exact_threshold=0, hnsw=hnsw)
        backend.vectors()
        open_s = time.perf_counter() - start
        scorer = ExactScorer(ids, list(vectors))
        with blas_threads(args.blas_threads):
            modes = {"exact-scan": timed(reference(scorer), qs), "raw-matmul": timed(raw_scan(rows), qs),
                     "exact (backend)": timed(search_ids(backend, mode="exact"), qs)}
            for nc in NUM_CANDIDATES:
                modes[f"knn, num_candidates={nc}"] = timed(search_ids(backend, mode="knn", num_candidates=nc), qs)
            modes["rerank-20 (reference scorer)"] = timed(reference(scorer), reranks)
            modes["rerank-20"] = timed(search_ids(backend, mode="exact"), reranks)
        if args.blas_threads > 0:
            modes["exact-scan, default BLAS threads"] = timed(reference(scorer), qs)
        del backend
        checks = engine_checks(path, ids, vectors, queries, model, args) if args.engine_checks else None
    finally:
        if temporary:
            shutil.rmtree(path, ignore_errors=True)
    return {"catalog": name, "items": len(ids), "rows": len(rows), "open_s": open_s, "build": build,
            "modes": summarise(modes), **({"engine_checks": checks} if checks else {})}


def engine_checks(path: Path, ids: list[str], vectors: np.ndarray, queries: np.ndarray, model: str, args) -> dict:
    import engine_checks as checks

    print("  engine checks: open times ...", flush=True)
    opened = checks.open_checks(path, vectors.shape[2], args.cache_dir)
    print(f"  engine checks: builds of {args.compare_rows:,} rows, old and new config ...", flush=True)
    return {"open": opened, "build": checks.build_checks(ids, vectors, queries, model, args.compare_rows)}


def summarise(timings: dict[str, tuple[np.ndarray, list]]) -> dict:
    """p50/p99 of each mode, its p50 and p99 speed-up over the exact scan, and recall against the reference."""
    base_ms, truth = timings["exact-scan"]
    rerank_truth = timings["rerank-20 (reference scorer)"][1]
    out = {}
    for mode, (ms, got) in timings.items():
        out[mode] = {**stats(ms), "speedup_p50": float(np.median(base_ms) / np.median(ms)),
                     "speedup_p99": float(np.percentile(base_ms, 99) / np.percentile(ms, 99))}
        if mode.startswith(("knn", "exact (backend)")):
            out[mode]["recall_at_10"] = recall(got, truth)
        if mode == "rerank-20":
            out[mode]["recall_at_10"] = recall(got, rerank_truth)
    return out


# -- report ---------------------------------------------------------------------------------------------
def latency_table(results: list[dict]) -> str:
    lines = ["| catalog | rows | mode | p50 ms | p99 ms | speed-up vs exact scan p50 / p99 | recall@10 vs exact |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in results:
        for mode, m in r["modes"].items():
            rec = f"{m['recall_at_10']:.3f}" if "recall_at_10" in m else ""
            lines.append(f"| {r['catalog']} | {r['rows']:,} | {mode} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
                         f"{m['speedup_p50']:.1f}x / {m['speedup_p99']:.1f}x | {rec} |")
    return "\n".join(lines)


def build_table(results: list[dict]) -> str:
    lines = [("| catalog | rows | upsert s | store commit s (rows/s) | write-ahead s | HNSW add s (rows/s) | cache save s "
             "| other s | rows/s without HNSW | open s | index MB | raw f32 MB | index/raw |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        b = r["build"]
        lines.append(
            f"| {r['catalog']}{' (cached build)' if b.get('reused') else ''} | {r['rows']:,} | {b['upsert_s']:.1f} | "
            f"{b['store_commit_s']:.1f} ({b['store_rows_per_s']:,.0f}) | {b['pending_write_s']:.1f} | "
            f"{b['hnsw_add_s']:.1f} ({b['hnsw_rows_per_s']:,.0f}) | {b['cache_save_s']:.1f} | {b['other_s']:.1f} | "
            f"{b['rows_per_s_without_hnsw']:,.0f} | {r['open_s']:.2f} | {b['index_bytes'] / 1e6:.0f} | "
            f"{b['raw_float32_bytes'] / 1e6:.0f} | {b['index_vs_raw']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    names = [n.strip() for n in args.catalogs.split(",") if n.strip()]
    if unknown := [n for n in names if n not in CATALOGS]:
        raise SystemExit(f"unknown catalogs {unknown}; choose from {list(CATALOGS)}")
    hnsw = replace(HnswConfig(), dtype=args.hnsw_dtype, connectivity=args.connectivity)
    info = {"machine": machine(), "hnsw": hnsw.__dict__, "args": {k: str(v) for k, v in vars(args).items()},
            "noise": NOISE, "queries": HELD_OUT}
    real, queries, model = real_rows(args)
    results = [bench_catalog(name, real, queries, model, args, hnsw) for name in names]
    write_result(args.out, {**info, "results": results})
    print(f"\n{json.dumps(info['machine'])}\n")
    print(latency_table(results), "\n")
    print(build_table(results))
    for r in results:
        if "engine_checks" in r:
            import engine_checks as checks

            print(f"\n[{r['catalog']}] open\n{checks.open_table(r['engine_checks']['open'])}")
            print(f"\n[{r['catalog']}] build\n{checks.build_table(r['engine_checks']['build'])}")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
