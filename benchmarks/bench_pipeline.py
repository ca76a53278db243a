"""Benchmark the offline pipeline: embedding throughput and extractive persona generation on clothing reviews.

Embedding: `p4r_search.encoder.Encoder.encode` against `SentenceTransformer.encode` called directly on
the same model object, the same texts and the same batch size, in alternating rounds; the overhead is
the pipeline's extra time in %. Persona generation: `generate_personas` with the extractive generator
on the first `--items` items of examples/ (a subset of the clothing data), end to end (reading done,
writing the JSONL included); the time inside `Encoder.encode` is reported as its baseline share.

    .venv/bin/python benchmarks/bench_pipeline.py [--texts 256] [--rounds 3] [--items 12]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, machine, timed_methods, write_result

from p4r_search.catalog import Catalog, load_catalog
from p4r_search.encoder import Encoder
from p4r_search.io import LineReader
from p4r_search.personas import make_generator
from p4r_search.personas.runner import generate_personas

EXAMPLES = ROOT / "examples"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=256, help="review texts encoded per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of raw and pipeline encoding")
    ap.add_argument("--items", type=int, default=12, help="items of examples/ given to the persona generator")
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


def main() -> None:
    args = parse_args()
    encoder = Encoder()
    reviews = [json.loads(line)["text"] for line in (EXAMPLES / "reviews.jsonl").read_text().splitlines() if line]
    embedding = bench_embedding(encoder, reviews[: args.texts], args.rounds)
    personas = bench_personas(encoder, args.items)
    result = {"machine": machine(), "args": vars(args), "embedding": embedding, "personas": personas}
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
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
