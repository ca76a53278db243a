"""Benchmark the offline pipeline: embedding throughput and extractive persona generation on clothing reviews.

Embedding: `p4r_search.encoder.Encoder.encode` against `SentenceTransformer.encode` called directly on
the same model object, the same texts and the same batch size, in alternating rounds; the overhead is
the pipeline's extra time in %. Persona generation: `generate_personas` with the extractive generator
on the first `--items` items of examples/ (a subset of the clothing data), end to end (reading done,
writing the JSONL included); the time inside `Encoder.encode` is reported as its baseline share.

Ray path (`--ray-items N`, 0 to skip): the same first N items through `p4r pipeline run` (a child process
with a local Ray, as a user runs it) with 1 encode actor of 2 CPUs and with 2 actors of 1 CPU, against the
single-process path in the same run: `generate_personas` then the evidence vectors `p4r index build` makes
(what the pipeline's output holds). Ray's fixed cost is a rerun with nothing left to do (Ray's start and the
check pass), reported apart.

    .venv/bin/python benchmarks/bench_pipeline.py [--texts 256] [--rounds 3] [--items 12] [--ray-items 48]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, machine, timed_methods, write_result

from p4r_search.catalog import Catalog, load_catalog
from p4r_search.documents import build_documents
from p4r_search.encoder import Encoder
from p4r_search.io import LineReader
from p4r_search.personas import make_generator
from p4r_search.personas.runner import generate_personas, read_personas

EXAMPLES = ROOT / "examples"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=256, help="review texts encoded per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of raw and pipeline encoding")
    ap.add_argument("--items", type=int, default=12, help="items of examples/ given to the persona generator")
    ap.add_argument("--ray-items", type=int, default=48, help="items for the Ray comparison (0: skip it)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pipeline.json")
    return ap.parse_args()


def bench_embedding(encoder: Encoder, texts: list[str], rounds: int) -> dict:
    model = encoder._model  # the loaded SentenceTransformer: the raw baseline uses the very same object
    raw = lambda: model.encode(texts, batch_size=encoder.batch_size, show_progress_bar=False)
    pipeline = lambda: encoder.encode(texts)
    raw(), pipeline()  # warm-up: first-call allocations and thread pools
    seconds: dict[str, list[float]] = {"raw": [], "pipeline": []}
    for _ in range(rounds):
        for name, fn in (("raw", raw), ("pipeline", pipeline)):
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    raw_s, pipe_s = float(np.median(seconds["raw"])), float(np.median(seconds["pipeline"]))
    return {"texts": len(texts), "rounds": rounds, "batch_size": encoder.batch_size,
            "max_seq_length": encoder.max_seq_length, "seconds": seconds,
            "raw_texts_per_s": len(texts) / raw_s, "pipeline_texts_per_s": len(texts) / pipe_s,
            "overhead_pct": (pipe_s / raw_s - 1) * 100}


def bench_personas(encoder: Encoder, items: int) -> dict:
    full = load_catalog(EXAMPLES / "items.jsonl", EXAMPLES / "reviews.jsonl", LineReader())
    chosen = list(full.items)[:items]
    catalog = Catalog({i: full.items[i] for i in chosen}, {i: full.reviews[i] for i in chosen})
    reviews = sum(len(full.reviews[i]) for i in chosen)
    generator = make_generator("extractive", encoder)
    with tempfile.TemporaryDirectory(prefix="p4r-bench-personas-") as tmp, \
            timed_methods({"encode": (Encoder, "encode")}) as inside:
        start = time.perf_counter()
        report = generate_personas(catalog, generator, Path(tmp) / "personas.jsonl")
        total = time.perf_counter() - start
    return {"items": len(chosen), "reviews": reviews, "personas": report.personas, "seconds": total,
            "items_per_s": len(chosen) / total, "reviews_per_s": reviews / total,
            "encode_seconds": inside["encode"], "encode_share": inside["encode"] / total}


def subset(items: int) -> tuple[Catalog, dict[str, str]]:
    full = load_catalog(EXAMPLES / "items.jsonl", EXAMPLES / "reviews.jsonl", LineReader())
    chosen = list(full.items)[:items]
    return Catalog({i: full.items[i] for i in chosen}, {i: full.reviews[i] for i in chosen}), {}


def write_subset(catalog: Catalog, folder: Path) -> tuple[Path, Path]:
    items, reviews = folder / "items.jsonl", folder / "reviews.jsonl"
    items.write_text("".join(i.model_dump_json() + "\n" for i in catalog.items.values()))
    reviews.write_text("".join(r.model_dump_json() + "\n" for rs in catalog.reviews.values() for r in rs))
    return items, reviews


def bench_single_process(encoder: Encoder, catalog: Catalog) -> dict:
    texts = {r.review_id: r.text for rs in catalog.reviews.values() for r in rs}
    with tempfile.TemporaryDirectory(prefix="p4r-bench-single-") as tmp:
        start = time.perf_counter()
        generate_personas(catalog, make_generator("extractive", encoder), Path(tmp) / "personas.jsonl")
        records = list(read_personas(Path(tmp) / "personas.jsonl").values())
        list(build_documents(records, encoder, persona_vector="evidence", review_texts=texts))
        seconds = time.perf_counter() - start
    return {"path": "single process (generate + evidence vectors)", "seconds": seconds,
            "items_per_s": len(catalog.items) / seconds}


def bench_ray_run(items: Path, reviews: Path, actors: int, cpus: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="p4r-bench-ray-") as tmp:
        command = [sys.executable, "-m", "p4r_search", "pipeline", "run", "--items", str(items), "--reviews",
                   str(reviews), "-o", tmp, "--encode-actors", str(actors), "--cpus-per-actor", str(cpus),
                   "--batch-size", "8", "--no-progress", "--json"]
        start = time.perf_counter()
        first = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        rerun = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        fixed = time.perf_counter() - start
    assert rerun["generated"] == 0, rerun
    return {"path": f"Ray, {actors} encode actor(s) x {cpus} CPU", "seconds": seconds,
            "items_per_s": first["generated"] / seconds, "fixed_seconds": fixed,
            "items_per_s_past_fixed": first["generated"] / max(seconds - fixed, 1e-9), "workers": first["workers"]}


def bench_ray(encoder: Encoder, items: int) -> list[dict]:
    catalog, _ = subset(items)
    with tempfile.TemporaryDirectory(prefix="p4r-bench-input-") as tmp:
        items_path, reviews_path = write_subset(catalog, Path(tmp))
        runs = [bench_single_process(encoder, catalog), bench_ray_run(items_path, reviews_path, 1, 2),
                bench_ray_run(items_path, reviews_path, 2, 1)]
    for run in runs:
        run["items"] = len(catalog.items)
    return runs


def print_ray(runs: list[dict]) -> None:
    base = runs[0]["items_per_s"]
    print(f"\n| path ({runs[0]['items']} items) | seconds | items/s | vs single | Ray fixed cost s | items/s past it |")
    print("|---|---:|---:|---:|---:|---:|")
    for run in runs:
        fixed = f"{run['fixed_seconds']:.1f}" if "fixed_seconds" in run else "-"
        past = f"{run['items_per_s_past_fixed']:.3f}" if "items_per_s_past_fixed" in run else "-"
        print(f"| {run['path']} | {run['seconds']:.1f} | {run['items_per_s']:.3f} | {run['items_per_s'] / base:.2f}x "
              f"| {fixed} | {past} |")


def main() -> None:
    args = parse_args()
    encoder = Encoder()
    reviews = [json.loads(line)["text"] for line in (EXAMPLES / "reviews.jsonl").read_text().splitlines() if line]
    embedding = bench_embedding(encoder, reviews[: args.texts], args.rounds)
    personas = bench_personas(encoder, args.items)
    ray_runs = bench_ray(encoder, args.ray_items) if args.ray_items else []
    result = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "embedding": embedding,
              "personas": personas, "ray": ray_runs}
    write_result(args.out, result)
    e, p = embedding, personas
    print(f"\n{json.dumps(result['machine'])}\n")
    print("| measure | pipeline | baseline | ratio |\n|---|---:|---:|---:|")
    print(f"| encode, texts/s ({e['texts']} reviews, batch {e['batch_size']}, median of {e['rounds']}) | "
          f"{e['pipeline_texts_per_s']:.1f} | {e['raw_texts_per_s']:.1f} (raw SentenceTransformer.encode) | "
          f"overhead {e['overhead_pct']:+.1f}% |")
    print(f"| extractive personas, items/s ({p['items']} items, {p['reviews']} reviews, {p['personas']} personas) | "
          f"{p['items_per_s']:.3f} ({p['reviews_per_s']:.1f} reviews/s) | {p['encode_seconds']:.1f} s of "
          f"{p['seconds']:.1f} s in Encoder.encode | encoding {p['encode_share']:.0%} |")
    if ray_runs:
        print_ray(ray_runs)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
