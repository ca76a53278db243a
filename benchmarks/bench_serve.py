"""Load-test `p4r serve` on a 50k-row embedded index, against the library called in-process in the same run.

1. Builds (once, cached under --cache-dir as `serve-50k-<key>/`) the `50k` catalog of bench_recommend.py:
   10,000 items x 5 personas, the 20,000 real review embeddings then 30,000 perturbed copies.
2. Starts the real CLI, `p4r serve --index DIR --host 127.0.0.1 --port N --workers W --queue Q`, as a
   subprocess, and waits for GET /ready.
3. For recommend and explain (and recommend by text, at fewer levels): N concurrent clients (a bounded
   asyncio httpx client, loopback only) each send requests back to back for --duration seconds; each
   request is a history of 10 item ids sampled with a fixed seed from the index's ids (explain: plus one
   other item). Reported per level: requests/s, p50/p99 ms, errors (non-200 answers, by status, and
   client-side exceptions), lost (sent minus answered), and the CPU seconds per request of the server
   process and of this client.
4. The same requests through the library in this process (`Recommender(EmbeddedBackend(DIR),
   encoder=Encoder())`, one BLAS thread as the service has), on 1 thread and on a pool of 8.
5. A soak: 8 clients mixing recommend and explain for --soak-minutes, sampling the server's VmRSS
   (/proc/PID/status) every 10 s: first, last, max, slope after warm-up, growth after warm-up.

The server is stopped in a `finally` (also on Ctrl-C and SIGTERM; it also gets SIGTERM if this process
dies). Results: a markdown table on stdout and every figure in --out (benchmarks/results/serve.json).

    .venv/bin/python benchmarks/bench_serve.py --duration 5 --soak-minutes 0.5   # quick check, ~4 min
    .venv/bin/python benchmarks/bench_serve.py                                    # ~16 min
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import shutil
import signal
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import httpx
import numpy as np
from bench_recommend import NOISE, PERSONAS, catalog_rows, documents, load_texts, real_rows
from common import ROOT, machine, stats, write_result
from serve_process import cpu_s, free_port, rss_mb, rss_parts, server_log_summary, start_server, stop_server, wait_ready

ROWS = 50_000
HISTORY = 10
K = 10
POOL = 1000  # distinct requests per kind, used in turn
TEXTS = 200
WARMUP = 5  # untimed requests of each kind before the timed levels


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per concurrency level")
    ap.add_argument("--concurrency", default="1,8,32", help="concurrent clients per level, comma-separated")
    ap.add_argument("--text-concurrency", default="1,8",
                    help="levels for recommend by text (encodes on every request); empty to skip")
    ap.add_argument("--library-threads", default="1,8", help="in-process baseline: thread counts")
    ap.add_argument("--soak-minutes", type=float, default=10.0, help="0 to skip the soak")
    ap.add_argument("--soak-clients", type=int, default=8)
    ap.add_argument("--rss-every", type=float, default=10.0, help="seconds between RSS samples in the soak")
    ap.add_argument("--port", type=int, default=0, help="0: a free port on 127.0.0.1")
    ap.add_argument("--workers", type=int, default=4, help="p4r serve --workers (threads computing at once)")
    ap.add_argument("--queue", type=int, default=256, help="p4r serve --queue (must exceed the most clients)")
    ap.add_argument("--timeout", type=float, default=10.0, help="p4r serve --timeout (seconds)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / "cache")
    ap.add_argument("--rebuild", action="store_true", help="build the cached 50k index again")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    return ap.parse_args()


def levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


# -- the index ------------------------------------------------------------------------------------------
def serve_index(args) -> tuple[Path, dict]:
    """The 50k catalog of bench_recommend.py as an embedded index, built once and kept in --cache-dir."""
    from p4r_search.backends.embedded import EmbeddedBackend
    from p4r_search.backends.embedded.store import FORMAT_VERSION
    from p4r_search.backends.embedded.vectors import HnswConfig

    real, _, model = real_rows(argparse.Namespace(seed=args.seed, cache_dir=args.cache_dir))
    rows = catalog_rows(real, ROWS, "noise", args.seed)
    vectors = rows.reshape(-1, PERSONAS, rows.shape[1])
    key = hashlib.sha256(json.dumps(["serve-50k", ROWS, args.seed, NOISE, FORMAT_VERSION, HnswConfig().__dict__,
                                     metadata.version("usearch"), vectors[:50, 0, :8].tolist()]).encode())
    path = args.cache_dir / f"serve-50k-{key.hexdigest()[:12]}"
    marker = path / "serve-build.json"  # outside the engine's files; written last, so a half build is redone
    if marker.exists() and not args.rebuild:
        print(f"reusing {path}", flush=True)
        return path, {**json.loads(marker.read_text()), "reused": True}
    shutil.rmtree(path, ignore_errors=True)
    ids = [f"i{i:07d}" for i in range(len(vectors))]
    print(f"building {path} ({ROWS:,} rows) ...", flush=True)
    start = time.perf_counter()
    EmbeddedBackend(path, writable=True).upsert(documents(ids, vectors, model))
    build = {"upsert_s": time.perf_counter() - start, "rows": ROWS, "items": len(ids), "hnsw": HnswConfig().__dict__,
             "format_version": FORMAT_VERSION, "built": time.strftime("%Y-%m-%d %H:%M %Z")}
    marker.write_text(json.dumps(build, indent=2))
    print(f"built in {build['upsert_s']:.0f}s", flush=True)
    return path, {**build, "reused": False}


def request_pool(path: Path, seed: int) -> dict[str, list[dict]]:
    """Request bodies: histories of HISTORY ids sampled from the index's ids (explain: plus another item),
    and review texts (held apart from nothing: the catalog's personas are not these texts' vectors)."""
    from p4r_search.backends.embedded import EmbeddedBackend

    ids = sorted(EmbeddedBackend(path).item_ids())
    rng = np.random.default_rng(seed + 10)
    recommend, explain = [], []
    for _ in range(POOL):
        picked = [ids[i] for i in rng.choice(len(ids), HISTORY + 1, replace=False)]
        recommend.append({"history": picked[:HISTORY], "k": K})
        explain.append({"history": picked[:HISTORY], "item_id": picked[HISTORY]})
    text = [{"text": t, "k": K} for t in load_texts(TEXTS)]
    return {"recommend": recommend, "explain": explain, "recommend (text)": text}


ENDPOINT = {"recommend": "/v1/recommend", "explain": "/v1/explain", "recommend (text)": "/v1/recommend"}


# -- the client -----------------------------------------------------------------------------------------
def valid(kind: str, body: dict) -> bool:
    return len(body.get("hits", ())) == K if kind.startswith("recommend") else "hit" in body and "rank" in body


async def load(base: str, work: list[tuple[str, dict]], clients: int, duration: float, pid: int,
               on_tick=None) -> dict:
    """`clients` workers, each sending the next request of `work` (in turn) as soon as its last one is
    answered, until `duration` seconds have passed; in-flight requests are then awaited."""
    sent = answered = 0
    errors: Counter = Counter()
    ms: list[float] = []
    turn = itertools.count()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=httpx.Timeout(60.0), limits=limits) as client:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration

        async def worker() -> None:
            nonlocal sent, answered
            while loop.time() < deadline:
                kind, body = work[next(turn) % len(work)]
                sent += 1
                start = time.perf_counter()
                try:
                    response = await client.post(ENDPOINT[kind], json=body)
                except httpx.TimeoutException:
                    errors["client timeout"] += 1
                    continue
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                elapsed = (time.perf_counter() - start) * 1000
                answered += 1
                if response.status_code != 200:
                    errors[f"HTTP {response.status_code}"] += 1
                elif not valid(kind, response.json()):
                    errors["bad body"] += 1
                else:
                    ms.append(elapsed)

        cpu0, own0, t0 = cpu_s(pid), time.process_time(), time.perf_counter()
        tasks = [asyncio.create_task(worker()) for _ in range(clients)]
        if on_tick is not None:
            ticker = asyncio.create_task(on_tick(lambda: sent))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
        server_cpu, client_cpu = cpu_s(pid) - cpu0, time.process_time() - own0
        if on_tick is not None:
            ticker.cancel()
    ok = len(ms)
    return {"clients": clients, "sent": sent, "answered": answered, "ok": ok, "errors": sum(errors.values()),
            "error_kinds": dict(errors), "lost": sent - answered, "wall_s": wall, "rps": ok / wall,
            **(stats(np.asarray(ms)) if ms else {}), "server_cpu_ms_per_req": 1000 * server_cpu / max(answered, 1),
            "client_cpu_ms_per_req": 1000 * client_cpu / max(answered, 1), "server_rss_mb": rss_mb(pid),
            "server_rss": rss_parts(pid)}


# -- the library, in this process ---------------------------------------------------------------------------
def library_calls(index: Path):
    from p4r_search.backends.embedded import EmbeddedBackend
    from p4r_search.encoder import Encoder
    from p4r_search.recommend import Recommender, SearchOptions, UserInput

    backend = EmbeddedBackend(index)
    backend.vectors()
    recommender = Recommender(backend, encoder=Encoder())
    options = SearchOptions(k=K)

    def recommend(body: dict):
        hits = recommender.recommend(UserInput(history=tuple(body["history"])), options)
        assert len(hits) == K
        return [h.item_id for h in hits]

    def explain(body: dict):
        return recommender.explain(UserInput(history=tuple(body["history"])), body["item_id"]).rank

    def by_text(body: dict):
        hits = recommender.recommend(UserInput(text=body["text"]), options)
        assert len(hits) == K
        return [h.item_id for h in hits]

    return {"recommend": recommend, "explain": explain, "recommend (text)": by_text}


def library_load(fn, bodies: list[dict], threads: int, duration: float) -> dict:
    turn = itertools.count()  # next() on a count is atomic under the GIL
    deadline = time.perf_counter() + duration
    per_thread: list[list[float]] = [[] for _ in range(threads)]
    errors: Counter = Counter()

    def worker(n: int) -> None:
        while time.perf_counter() < deadline:
            body = bodies[next(turn) % len(bodies)]
            start = time.perf_counter()
            try:
                fn(body)
            except Exception as exc:  # noqa: BLE001 (counted and reported)
                errors[type(exc).__name__] += 1
                continue
            per_thread[n].append((time.perf_counter() - start) * 1000)

    cpu0, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    ms = np.concatenate([np.asarray(m) for m in per_thread])
    return {"threads": threads, "ok": len(ms), "errors": sum(errors.values()), "error_kinds": dict(errors),
            "wall_s": wall, "rps": len(ms) / wall, **(stats(ms) if len(ms) else {}),
            "cpu_ms_per_req": 1000 * cpu / max(len(ms), 1)}


# -- the soak -------------------------------------------------------------------------------------------
async def soak(base: str, pool: dict, args, pid: int) -> dict:
    work = [w for pair in zip((("recommend", b) for b in pool["recommend"]),
                              (("explain", b) for b in pool["explain"])) for w in pair]
    duration = args.soak_minutes * 60
    every = min(args.rss_every, max(duration / 6, 1.0))
    samples: list[dict] = []
    t0 = time.perf_counter()

    async def sample(sent) -> None:
        while True:
            samples.append({"t_s": time.perf_counter() - t0, "rss_mb": rss_mb(pid), "sent": sent(), **rss_parts(pid)})
            print(f"  soak t={samples[-1]['t_s']:5.0f}s RSS {samples[-1]['rss_mb']:.1f} MB, {sent()} requests",
                  flush=True)
            await asyncio.sleep(every)

    result = await load(base, work, args.soak_clients, duration, pid, on_tick=sample)
    samples.append({"t_s": time.perf_counter() - t0, "rss_mb": rss_mb(pid), "sent": result["sent"], **rss_parts(pid)})
    warmup_s = 60.0 if duration >= 180 else duration / 5
    t = np.array([s["t_s"] for s in samples])
    rss = np.array([s["rss_mb"] for s in samples])
    after = t >= warmup_s
    base_mb = float(np.interp(warmup_s, t, rss))
    slope = float(np.polyfit(t[after] / 60, rss[after], 1)[0]) if after.sum() >= 2 else float("nan")
    growth = (rss[-1] - base_mb) / base_mb
    return {**result, "minutes": args.soak_minutes, "warmup_s": warmup_s, "samples": samples,
            "rss_first_mb": float(rss[0]), "rss_at_warmup_mb": base_mb, "rss_last_mb": float(rss[-1]),
            "rss_max_mb": float(rss.max()), "slope_mb_per_min": slope, "growth_after_warmup": float(growth),
            "max_growth_after_warmup": float((rss[after].max() - base_mb) / base_mb) if after.any() else 0.0,
            "verdict": "flat" if growth < 0.02 else "growing"}


# -- the run ---------------------------------------------------------------------------------------------
async def service_levels(base: str, pool: dict, args, pid: int) -> list[dict]:
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=60) as client:
        for kind, endpoint in ENDPOINT.items():
            for body in pool[kind][:WARMUP]:
                (await client.post(endpoint, json=body)).raise_for_status()
    rows = []
    plan = [(kind, c) for kind in ("recommend", "explain") for c in levels(args.concurrency)]
    plan += [("recommend (text)", c) for c in levels(args.text_concurrency)]
    for kind, clients in plan:
        result = await load(base, [(kind, b) for b in pool[kind]], clients, args.duration, pid)
        rows.append({"kind": kind, "where": "service", **result})
        print(f"  service {kind:17s} x{clients:<3d} {result['rps']:7.1f} req/s  p50 {result.get('p50_ms', 0):7.1f} "
              f"p99 {result.get('p99_ms', 0):7.1f} ms  errors {result['errors']} lost {result['lost']}", flush=True)
    return rows


async def agreement(base: str, pool: dict, calls: dict, count: int = 20) -> dict:
    """Whether the service and the library return the same items (recommend) and rank (explain)."""
    same = Counter()
    async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=60) as client:
        for body in pool["recommend"][:count]:
            got = (await client.post("/v1/recommend", json=body)).json()
            same["recommend"] += [h["item_id"] for h in got["hits"]] == calls["recommend"](body)
        for body in pool["explain"][:count]:
            got = (await client.post("/v1/explain", json=body)).json()
            same["explain"] += got["rank"] == calls["explain"](body)
    return {kind: f"{n}/{count}" for kind, n in same.items()}


def library_levels(calls: dict, pool: dict, args) -> list[dict]:
    from threadpoolctl import threadpool_limits

    rows = []
    with threadpool_limits(1, user_api="blas"):  # as p4r serve (and make_recommender) do
        for kind, fn in calls.items():
            for body in pool[kind][:WARMUP]:
                fn(body)
        plan = [(kind, t) for kind in ("recommend", "explain") for t in levels(args.library_threads)]
        plan += [("recommend (text)", 1)] if levels(args.text_concurrency) else []
        for kind, threads in plan:
            result = library_load(calls[kind], pool[kind], threads, args.duration)
            rows.append({"kind": kind, "where": "library", **result})
            print(f"  library {kind:17s} x{threads:<3d} {result['rps']:7.1f} req/s  p50 {result.get('p50_ms', 0):7.1f} "
                  f"p99 {result.get('p99_ms', 0):7.1f} ms  errors {result['errors']}", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [("| request | where | clients / threads | requests | req/s | p50 ms | p99 ms | errors | lost "
              "| CPU ms/req (server; client) |"), "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["where"] == "service":
            cpu = f"{r['server_cpu_ms_per_req']:.1f}; {r['client_cpu_ms_per_req']:.1f}"
            n, lost = r["clients"], r["lost"]
            errs = f"{r['errors']}" + (f" ({', '.join(f'{k}: {v}' for k, v in r['error_kinds'].items())})"
                                       if r["errors"] else "")
        else:
            cpu, n, lost, errs = f"{r['cpu_ms_per_req']:.1f} (in-process)", r["threads"], "–", f"{r['errors']}"
        lines.append(f"| {r['kind']} | {r['where']} | {n} | {r['ok']:,} | {r['rps']:.1f} | {r.get('p50_ms', 0):.1f} | "
                     f"{r.get('p99_ms', 0):.1f} | {errs} | {lost} | {cpu} |")
    return "\n".join(lines)


def overhead(rows: list[dict]) -> dict:
    out = {}
    for kind in ENDPOINT:
        svc = next((r for r in rows if r["kind"] == kind and r["where"] == "service" and r["clients"] == 1), None)
        lib = next((r for r in rows if r["kind"] == kind and r["where"] == "library" and r["threads"] == 1), None)
        if svc and lib and "p50_ms" in svc and "p50_ms" in lib:
            out[kind] = {"service_p50_ms": svc["p50_ms"], "library_p50_ms": lib["p50_ms"],
                         "overhead_p50_ms": svc["p50_ms"] - lib["p50_ms"],
                         "service_cpu_ms_per_req": svc["server_cpu_ms_per_req"] + svc["client_cpu_ms_per_req"],
                         "library_cpu_ms_per_req": lib["cpu_ms_per_req"]}
    return out


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below on SIGTERM too
    if args.port == 0:
        args.port = free_port()
    if args.queue < max(levels(args.concurrency) + [args.soak_clients]):
        print(f"warning: --queue {args.queue} is below the most clients; expect 503s", file=sys.stderr)
    info = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
    index, build = serve_index(args)
    pool = request_pool(index, args.seed)
    base = f"http://127.0.0.1:{args.port}"
    log_path = args.cache_dir / "serve-server.log"
    proc, command = start_server(index, args, log_path)
    result: dict = {**info, "index": str(index), "build": build, "server_command": command, "server_log": str(log_path)}
    try:
        print(f"p4r serve (pid {proc.pid}) starting: {' '.join(command)}", flush=True)
        result["ready_s"] = wait_ready(proc, base, log_path)
        result["rss_ready_mb"], result["rss_ready"] = rss_mb(proc.pid), rss_parts(proc.pid)
        print(f"ready after {result['ready_s']:.1f}s, RSS {result['rss_ready_mb']:.0f} MB", flush=True)
        rows = asyncio.run(service_levels(base, pool, args, proc.pid))
        calls = library_calls(index)
        result["agreement"] = asyncio.run(agreement(base, pool, calls))
        print(f"  service vs library, same answer: {result['agreement']}", flush=True)
        rows += library_levels(calls, pool, args)
        rows.sort(key=lambda r: (list(ENDPOINT).index(r["kind"]), r["where"] != "service"))
        result["rows"], result["overhead"] = rows, overhead(rows)
        if args.soak_minutes > 0:
            print(f"soak: {args.soak_clients} clients, recommend and explain in turn, {args.soak_minutes:g} min",
                  flush=True)
            result["soak"] = asyncio.run(soak(base, pool, args, proc.pid))
    finally:
        result["server_exit"] = stop_server(proc)
        result["server_log_summary"] = server_log_summary(log_path)
    write_result(args.out, result)
    print_report(result, args)


def print_report(result: dict, args) -> None:
    print(f"\n{json.dumps(result['machine'])}\n")
    print(f"`{' '.join(Path(c).name if c.endswith('/p4r') else c for c in result['server_command'])}`, "
          f"ready in {result['ready_s']:.1f}s, RSS {result['rss_ready_mb']:.0f} MB; {args.duration:g} s per level\n")
    print(table(result["rows"]), "\n")
    for kind, o in result["overhead"].items():
        print(f"- {kind}: service p50 {o['service_p50_ms']:.1f} ms vs library {o['library_p50_ms']:.1f} ms at "
              f"1 client: overhead {o['overhead_p50_ms']:+.1f} ms/request; CPU per request {o['service_cpu_ms_per_req']:.1f} "
              f"ms (server + client) vs {o['library_cpu_ms_per_req']:.1f} ms in-process")
    print(f"- service and library agree: {result['agreement']}")
    if soak_result := result.get("soak"):
        s = soak_result
        print(f"\nsoak: {s['clients']} clients x {s['minutes']:g} min: {s['ok']:,} ok of {s['sent']:,} sent "
              f"({s['rps']:.1f} req/s, p50 {s.get('p50_ms', 0):.1f} ms, p99 {s.get('p99_ms', 0):.1f} ms), "
              f"errors {s['errors']} {s['error_kinds'] or ''}, lost {s['lost']}")
        print(f"  RSS first {s['rss_first_mb']:.1f} MB, at {s['warmup_s']:.0f}s {s['rss_at_warmup_mb']:.1f} MB, "
              f"last {s['rss_last_mb']:.1f} MB, max {s['rss_max_mb']:.1f} MB; slope after warm-up "
              f"{s['slope_mb_per_min']:+.2f} MB/min; growth after warm-up {100 * s['growth_after_warmup']:+.2f}% "
              f"-> {s['verdict']}")
    print(f"\nserver: exit {result['server_exit']}, log {result['server_log_summary']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
