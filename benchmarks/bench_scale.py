"""Measure what a 1M / 10M-item run needs, on real data, and project it (docs/scale.md).

Measured here: reviews per item and review length (characters; word pieces of the encoder's tokenizer, untruncated
and cut at the encoder's 128) on the datasets in ../shared/data (read from there, converted into a temporary
folder by the package's converters, never copied) and on examples/; the LLM synthesis prompt's tokens per item,
built by `LLMGenerator.synthesis_request` without network and counted as the client does (`estimate_tokens`, 3.5
characters a token); `Encoder.encode` texts/s on --texts random Digital Music reviews (batch 64, median of
--rounds after a warm-up batch), rounds alternating torch's default threads and 1 thread (the per-core rate); the
extractive generator end to end on the first --items items of examples/ (as bench_pipeline.py). Output tokens are
NOT measured (no real LLM run exists here): they are bounded from the answer schema and labelled estimates. The
GPU rate is sbert.net's published figure, not measured here. Projections multiply these by 1M and 10M items;
prices come from prices.json.

    .venv/bin/python benchmarks/bench_scale.py [--texts 512] [--rounds 3] [--items 12] [--datasets music,beauty]
    .venv/bin/python benchmarks/bench_scale.py --device cuda   # on a GPU node: the encode rows are then GPU rates
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
from common import ROOT, machine, timed_methods, write_result

from p4r_search.catalog import Catalog, load_catalog
from p4r_search.data import convert_amazon, convert_goodreads
from p4r_search.encoder import Encoder
from p4r_search.io import LineReader
from p4r_search.personas import make_generator
from p4r_search.personas.llm import LLMGenerator, LLMSettings
from p4r_search.personas.llm.schema import MAX_EVIDENCE, NAME_MAX, TEXT_MAX
from p4r_search.personas.llm.selection import estimate_tokens
from p4r_search.personas.runner import generate_personas

EXAMPLES, DATA = ROOT / "examples", ROOT.parent / "shared" / "data"
SOURCES = {  # name → (converter, files)
    "music": (convert_amazon, "amazon-digital-music-prefix/reviews_Digital_Music_5.prefix.json.gz"),
    "beauty": (convert_amazon, "amazon-all-beauty/All_Beauty_5.json.gz"),
    "goodreads": (convert_goodreads, ["goodreads-fantasy-ya/fantasy_10000.json.gz",
                                      "goodreads-fantasy-ya/young_adult_10000.json.gz"]),
}
SCALES = (1_000_000, 10_000_000)
GPU_PUBLISHED = {"texts_per_s": 14200, "gpu": "V100", "what": "sentences/s, sbert.net pretrained-models table "
                 "(https://sbert.net/_static/html/models_en_sentence_embeddings.html), all-MiniLM-L6-v2; "
                 "published, not measured here; short sentences, so 128-word-piece reviews will be slower"}
LARGER_MODEL = "gpt-4o"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=512, help="Digital Music review texts per encoding round")
    ap.add_argument("--rounds", type=int, default=3, help="timed encoding rounds (median), per thread setting")
    ap.add_argument("--items", type=int, default=12, help="items of examples/ given to the extractive generator")
    ap.add_argument("--datasets", default="music,beauty,goodreads", help="of ../shared/data (music is required)")
    ap.add_argument("--seed", type=int, default=0, help="which review texts are sampled for the encoding rounds")
    ap.add_argument("--device", default=None, help="torch device of the encoder (cuda on a GPU node; default cpu)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    return ap.parse_args()


def load_source(name: str) -> Catalog:
    convert, files = SOURCES[name]
    with tempfile.TemporaryDirectory(prefix="p4r-bench-scale-") as tmp:
        paths = [DATA / f for f in ([files] if isinstance(files, str) else files)]
        convert(paths[0] if convert is convert_amazon else paths, tmp)
        return load_catalog(Path(tmp) / "items.jsonl", Path(tmp) / "reviews.jsonl", LineReader())


def dist(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
            "max": float(v.max())}


def review_stats(catalog: Catalog, tokenizer, limit: int) -> dict:
    counts = [len(r) for r in catalog.reviews.values()]
    texts = [r.text for rs in catalog.reviews.values() for r in rs]
    pieces = [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]
    return {"items": len(counts), "reviews": len(texts), "reviews_per_item": dist(counts),
            "chars": dist([len(t) for t in texts]), "word_pieces": dist(pieces),
            "word_pieces_truncated": dist(np.minimum(pieces, limit)),
            "share_truncated": float(np.mean(np.asarray(pieces) > limit))}


def prompt_stats(catalog: Catalog, generator: LLMGenerator) -> dict:
    """Prompt tokens as the client estimates them for the rate limiter (`ChatClient._send`), plus the schema."""
    prompt, schema, selected, clipped, out_low, out_cap = [], [], [], 0, [], []
    cap = generator.settings.max_output_tokens
    example = {"name": "Two Or Three Words", "description": "Who these users are and what they want.",
               "rationale": "Why this product suits or disappoints them, from their reviews.",
               "evidence_review_ids": ["R1"]}  # the format example of the prompt
    for item, reviews in catalog:
        request = generator.synthesis_request(item, reviews)
        prompt.append(sum(estimate_tokens(m["content"]) for m in request.messages))
        schema.append(estimate_tokens(json.dumps(request.schema)))
        selected.append(len(request.reviews))
        clipped += len(request.reviews) < len(reviews)
        low, high = request.count
        ids = request.evidence_ids[-min(MAX_EVIDENCE, len(request.evidence_ids)):]  # the longest ids
        widest = {"name": "x" * NAME_MAX, "description": "x" * TEXT_MAX, "rationale": "x" * TEXT_MAX,
                  "evidence_review_ids": ids}
        out_low.append(estimate_tokens(json.dumps({"personas": [example] * low})))
        out_cap.append(min(cap, estimate_tokens(json.dumps({"personas": [widest] * high}))))
    return {"items": len(prompt), "prompt_tokens": dist(prompt), "schema_tokens": dist(schema),
            "reviews_in_prompt": dist(selected), "items_over_budget": clipped,
            "output_tokens_low_estimate": dist(out_low), "output_tokens_cap_estimate": dist(out_cap),
            "max_output_tokens": cap, "max_prompt_tokens": generator.settings.max_prompt_tokens,
            "counted_as": "estimate_tokens: ceil(characters / 3.5), as ChatClient._send does"}


def encode_rates(encoder: Encoder, texts: list[str], rounds: int) -> dict:
    """Rounds alternate torch's default threads and 1 thread, so both see the same load on this shared machine."""
    import torch

    default = torch.get_num_threads()
    encoder.encode(texts[: encoder.batch_size])  # warm-up: thread pools, first-call allocations
    seconds: dict[int, list[float]] = {default: [], 1: []}
    for _ in range(rounds):
        for threads, times in seconds.items():
            torch.set_num_threads(threads)
            start = time.perf_counter()
            encoder.encode(texts)
            times.append(time.perf_counter() - start)
    torch.set_num_threads(default)
    rate = {k: {"texts": len(texts), "torch_threads": k, "seconds": v, "texts_per_s": len(texts) / float(np.median(v))}
            for k, v in seconds.items()}
    return {"default_threads": rate[default], "one_thread": rate[1]}


def extractive(encoder: Encoder, items: int) -> dict:
    full = load_catalog(EXAMPLES / "items.jsonl", EXAMPLES / "reviews.jsonl", LineReader())
    chosen = list(full.items)[:items]
    catalog = Catalog({i: full.items[i] for i in chosen}, {i: full.reviews[i] for i in chosen})
    reviews = sum(len(full.reviews[i]) for i in chosen)
    with tempfile.TemporaryDirectory(prefix="p4r-bench-scale-") as tmp, \
            timed_methods({"encode": (Encoder, "encode")}) as inside:
        out = Path(tmp) / "personas.jsonl"
        start = time.perf_counter()
        report = generate_personas(catalog, make_generator("extractive", encoder), out)
        total = time.perf_counter() - start
        records = [json.loads(line) for line in out.read_text().splitlines() if line]
    cited = {r for rec in records for p in rec["personas"] for r in p["evidence_review_ids"]}
    return {"items": len(chosen), "reviews": reviews, "personas": report.personas, "seconds": total,
            "items_per_s": len(chosen) / total, "reviews_per_s": reviews / total, "encode_seconds": inside["encode"],
            "personas_per_item": report.personas / len(chosen), "evidence_share_of_reviews": len(cited) / reviews}


def project(m: dict) -> dict:
    music, ex, llm = m["reviews"]["music"], m["extractive"], m["prompts"]["music"]
    prices = json.loads(resources.files("p4r_search.personas.llm").joinpath("prices.json").read_text())
    r, p = music["reviews_per_item"]["mean"], ex["personas_per_item"]
    per_core, machine_rate = m["encode"]["one_thread"]["texts_per_s"], m["encode"]["default_threads"]["texts_per_s"]
    out = {}
    for n in SCALES:
        texts = {"single_machine": n * (2 * r + p), "pipeline": n * (r + p)}  # reviews twice vs once, + persona texts
        row = {"items": n, "reviews": n * r, "texts_to_encode": texts,
               "encode_hours_one_core": {k: t / per_core / 3600 for k, t in texts.items()},
               "encode_hours_this_machine": {k: t / machine_rate / 3600 for k, t in texts.items()},
               "encode_hours_gpu_published": {k: t / GPU_PUBLISHED["texts_per_s"] / 3600 for k, t in texts.items()},
               "extractive_hours_one_process": n * r / ex["reviews_per_s"] / 3600,
               "llm_tokens_in": n * llm["prompt_tokens"]["mean"],
               "llm_tokens_out": {"low": n * llm["output_tokens_low_estimate"]["mean"],
                                  "cap": n * llm["output_tokens_cap_estimate"]["mean"]}, "llm_cost_usd": {}}
        for model in ("gpt-4o-mini", LARGER_MODEL):
            price = prices["models"][model]
            for case, tokens_out in row["llm_tokens_out"].items():
                usd = (row["llm_tokens_in"] * price["input"] + tokens_out * price["output"]) / 1e6
                row["llm_cost_usd"][f"{model} {case}"] = {"list": usd, "batch": usd * prices["batch_discount"]}
        out[str(n)] = row
    return {"per_item": {"reviews": r, "personas": p, "dataset": "amazon-digital-music-prefix (mean reviews/item)"},
            "scales": out, "prices": prices, "gpu": GPU_PUBLISHED}


def main() -> None:
    args = parse_args()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "sequence longer than 128" is expected: we count untruncated pieces too
    encoder = Encoder(device=args.device)
    tokenizer, limit = encoder._model.tokenizer, encoder._model.max_seq_length
    catalogs = {name: load_source(name) for name in args.datasets.split(",")}
    catalogs["examples"] = load_catalog(EXAMPLES / "items.jsonl", EXAMPLES / "reviews.jsonl", LineReader())
    reviews = {name: review_stats(c, tokenizer, limit) for name, c in catalogs.items()}
    generator = LLMGenerator(LLMSettings(model="gpt-4o-mini"), encoder)
    prompts = {name: prompt_stats(catalogs[name], generator) for name in ("music", "examples")}
    texts = [r.text for rs in catalogs["music"].reviews.values() for r in rs]
    sample = random.Random(args.seed).sample(texts, min(args.texts, len(texts)))
    encode = {"batch_size": encoder.batch_size, "max_seq_length": limit, "dataset": "music",
              "device": args.device or "cpu",
              **encode_rates(encoder, sample, args.rounds)}
    ext = extractive(encoder, args.items)
    measured = {"reviews": reviews, "prompts": prompts, "encode": encode, "extractive": ext}
    result = {"machine": machine(), "args": vars(args), **measured, "projection": project(measured)}
    write_result(args.out, result)
    print_tables(result)
    print(f"\nwrote {args.out}")


def print_tables(res: dict) -> None:
    print(f"\n{json.dumps(res['machine'])}\n")
    print("| dataset | items | reviews | reviews/item mean / median / p90 | chars mean / p90 | word pieces mean "
          "(cut at 128) | over 128 |\n|---|---:|---:|---:|---:|---:|---:|")
    for name, s in res["reviews"].items():
        rpi, ch, wp = s["reviews_per_item"], s["chars"], s["word_pieces"]
        print(f"| {name} | {s['items']:,} | {s['reviews']:,} | "
              f"{rpi['mean']:.1f} / {rpi['median']:.0f} / {rpi['p90']:.0f} | "
              f"{ch['mean']:.0f} / {ch['p90']:.0f} | {wp['mean']:.0f} ({s['word_pieces_truncated']['mean']:.0f}) | "
              f"{s['share_truncated']:.0%} |")
    print("\n| LLM synthesis prompt (gpt-4o-mini settings) | items | prompt tokens mean / p90 | schema tokens | "
          "reviews in prompt mean | items over budget | output tokens: low / cap (estimates) |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    for name, s in res["prompts"].items():
        print(f"| {name} | {s['items']} | {s['prompt_tokens']['mean']:.0f} / {s['prompt_tokens']['p90']:.0f} | "
              f"{s['schema_tokens']['mean']:.0f} | {s['reviews_in_prompt']['mean']:.1f} | {s['items_over_budget']} | "
              f"{s['output_tokens_low_estimate']['mean']:.0f} / {s['output_tokens_cap_estimate']['mean']:.0f} "
              f"(max_output_tokens {s['max_output_tokens']}) |")
    e, x = res["encode"], res["extractive"]
    print("\n| rate on this machine | value |\n|---|---:|")
    print(f"| encode on {e['device']}, Digital Music reviews/s, {e['default_threads']['torch_threads']} torch threads "
          f"(batch {e['batch_size']}, {e['default_threads']['texts']} texts, median of {len(e['one_thread']['seconds'])}) "
          f"| {e['default_threads']['texts_per_s']:.1f} |")
    print(f"| encode, same, 1 torch thread (per core) | {e['one_thread']['texts_per_s']:.1f} |")
    print(f"| extractive, examples/ ({x['items']} items, {x['reviews']} reviews, {x['personas']} personas) | "
          f"{x['items_per_s']:.3f} items/s, {x['reviews_per_s']:.1f} reviews/s, {x['encode_seconds'] / x['seconds']:.0%} "
          f"encoding |")
    p = res["projection"]
    print(f"\nProjection: {p['per_item']['reviews']:.1f} reviews/item ({p['per_item']['dataset']}), "
          f"{p['per_item']['personas']:.1f} personas/item (extractive on examples/)\n")
    print("| items | reviews | texts to encode (1 machine / pipeline) | encode h, 1 core | encode h, this 2-core machine | "
          f"encode h, 1 GPU (published {GPU_PUBLISHED['gpu']} rate) | LLM tokens in | LLM tokens out low-cap |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in p["scales"].values():
        t, c, m, g = (row["texts_to_encode"], row["encode_hours_one_core"], row["encode_hours_this_machine"],
                      row["encode_hours_gpu_published"])
        o = row["llm_tokens_out"]
        print(f"| {row['items']:,} | {row['reviews']:,.0f} | {t['single_machine']:,.0f} / {t['pipeline']:,.0f} | "
              f"{c['single_machine']:,.0f} / {c['pipeline']:,.0f} | {m['single_machine']:,.0f} / {m['pipeline']:,.0f} | "
              f"{g['single_machine']:,.1f} / {g['pipeline']:,.1f} | {row['llm_tokens_in'] / 1e9:,.2f} B | "
              f"{o['low'] / 1e9:,.2f}-{o['cap'] / 1e9:,.2f} B |")
    print("\n| items | model, output case | list USD | Batch API USD |\n|---:|---|---:|---:|")
    for row in p["scales"].values():
        for name, usd in row["llm_cost_usd"].items():
            print(f"| {row['items']:,} | {name} | {usd['list']:,.0f} | {usd['batch']:,.0f} |")


if __name__ == "__main__":
    main()
