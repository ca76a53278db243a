"""Attack `p4r serve` and an index from outside, as issue 23 did, and count what each attack got back.

1. Builds (once, under --cache-dir as `attack-index/`) the examples' index, 150 items, as `make demo` does.
2. Starts the real `p4r serve` (a subprocess, loopback, with an API key) and sends:
   - history: 4 concurrent `/v1/recommend` with a 100,000-item history (one id repeated, 1.4 MB), while a
     probe client sends ordinary requests; the attack's statuses and seconds, the probes' statuses, and the
     server's CPU seconds;
   - chunked: a 50 MB body with `Transfer-Encoding: chunked`; the status, and the server's RSS before and after;
   - non-finite numbers (`Infinity`, `-Infinity`, `NaN` as weights) and the Authorization forms
     (`Bearer`, `bearer`, no scheme, `X-API-Key`); their statuses.
3. Damages each file of a copy of the index five ways (first bytes flipped, middle bytes flipped, truncated
   to half, emptied, deleted) and asks `p4r index info` and `p4r recommend` on each, in-process (CliRunner,
   one loaded encoder): exit codes, how many printed a traceback, how many answered.

A table on stdout; every figure in --out (benchmarks/results/attack.json).

    .venv/bin/python benchmarks/bench_attack.py    # ~5 min on this 2-core machine
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from common import ROOT, machine, write_result
from serve_process import P4R, cpu_s, free_port, rss_mb, start_server, stop_server, wait_ready

EXAMPLES = ROOT / "examples"
KEY = "bench-attack-key"
DAMAGES = ("head_flipped", "middle_flipped", "truncated", "emptied", "deleted")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / "cache")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "attack.json")
    ap.add_argument("--history", type=int, default=100_000, help="items in the long-history attack")
    ap.add_argument("--chunked-mb", type=int, default=50, help="size of the chunked body")
    return ap.parse_args()


def build_index(cache: Path) -> Path:
    index = cache / "attack-index"
    if (index / "store").is_dir():
        return index
    personas = cache / "attack-personas.jsonl"
    run = [str(P4R)]
    subprocess.run([*run, "personas", "generate", "--items", str(EXAMPLES / "items.jsonl"), "--reviews",
                    str(EXAMPLES / "reviews.jsonl"), "-o", str(personas), "--no-progress"], check=True)
    subprocess.run([*run, "index", "build", "--personas", str(personas), "--items", str(EXAMPLES / "items.jsonl"),
                    "--index", str(index), "--no-progress"], check=True)
    return index


def first_item() -> str:
    return json.loads((EXAMPLES / "items.jsonl").read_text().splitlines()[0])["item_id"]


class Probe(threading.Thread):
    """Ordinary requests back to back until stopped, counting statuses."""

    def __init__(self, base: str, body: dict):
        super().__init__(daemon=True)
        self.base, self.body, self.statuses, self.stop = base, body, Counter(), threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                          trust_env=False) as http:
            while not self.stop.is_set():
                try:
                    self.statuses[http.post("/v1/recommend", json=self.body).status_code] += 1
                except httpx.HTTPError as exc:
                    self.statuses[type(exc).__name__] += 1


def history_attack(base: str, pid: int, item: str, size: int) -> dict:
    body = json.dumps({"history": [item] * size}).encode()
    probe = Probe(base, {"history": [item], "k": 5})
    results: list[tuple[int | str, float]] = []

    def attack() -> None:
        started = time.perf_counter()
        try:
            status: int | str = httpx.post(f"{base}/v1/recommend", content=body, timeout=120, trust_env=False,
                                           headers={"Authorization": f"Bearer {KEY}",
                                                    "Content-Type": "application/json"}).status_code
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        results.append((status, time.perf_counter() - started))

    cpu_before = cpu_s(pid)
    probe.start()
    attackers = [threading.Thread(target=attack) for _ in range(4)]
    for t in attackers:
        t.start()
    for t in attackers:
        t.join()
    time.sleep(2)  # probes after the attack: is the service back at once?
    probe.stop.set()
    probe.join()
    return {"history_items": size, "body_bytes": len(body), "attack_statuses": dict(Counter(s for s, _ in results)),
            "attack_seconds": sorted(round(t, 2) for _, t in results), "probe_statuses": dict(probe.statuses),
            "server_cpu_s": round(cpu_s(pid) - cpu_before, 2)}


def chunked_attack(base: str, pid: int, megabytes: int) -> dict:
    def body():
        yield b'{"text": "'
        for _ in range(megabytes):
            yield b"a" * (1 << 20)
        yield b'"}'

    before = rss_mb(pid)
    try:
        status: int | str = httpx.post(f"{base}/v1/recommend", content=body(), timeout=120, trust_env=False,
                                       headers={"Authorization": f"Bearer {KEY}",
                                                "Content-Type": "application/json"}).status_code
    except httpx.HTTPError as exc:  # the server may close the connection once it has answered 413
        status = type(exc).__name__
    return {"megabytes": megabytes, "status": status, "rss_before_mb": round(before, 1),
            "rss_after_mb": round(rss_mb(pid), 1)}


def small_attacks(base: str, item: str) -> dict:
    raw = '{"history": ["%s"], "keywords": "dress", "persona_weight": %s}'
    out = {}
    with httpx.Client(base_url=base, timeout=60, trust_env=False) as http:
        for number in ("Infinity", "-Infinity", "NaN", "1e999"):
            response = http.post("/v1/recommend", content=raw % (item, number),
                                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
            out[f"persona_weight {number}"] = response.status_code
        for name, headers in {"Bearer KEY": {"Authorization": f"Bearer {KEY}"},
                              "bearer KEY": {"Authorization": f"bearer {KEY}"},
                              "KEY (no scheme)": {"Authorization": KEY}, "X-API-Key": {"X-API-Key": KEY},
                              "no key": {}}.items():
            out[f"auth {name}"] = http.get("/v1/index", headers=headers).status_code
    return out


def serve_attacks(index: Path, args) -> dict:
    os.environ["P4R_SERVE_API_KEY"] = KEY
    settings = argparse.Namespace(port=free_port(), workers=4, queue=64, timeout=10.0)
    log = args.cache_dir / "attack-serve.log"
    proc, _ = start_server(index, settings, log)
    base = f"http://127.0.0.1:{settings.port}"
    try:
        wait_ready(proc, base, log)
        item = first_item()
        return {"history": history_attack(base, proc.pid, item, args.history),
                "chunked": chunked_attack(base, proc.pid, args.chunked_mb), "small": small_attacks(base, item),
                "server_tracebacks": log.read_text(errors="replace").count("Traceback")}
    finally:
        stop_server(proc)


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "deleted":
        path.unlink()
    elif how == "emptied":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        at = 0 if how == "head_flipped" else len(data) // 2
        data[at:at + 16] = bytes(b ^ 0xFF for b in data[at:at + 16])
        path.write_bytes(bytes(data))


def index_attacks(index: Path, work: Path) -> dict:
    from click.testing import CliRunner

    from p4r_search.cli import cli

    item = first_item()
    commands = {"index info": ["index", "info", "--index"],
                "recommend": ["recommend", "--history", item, "-k", "3", "--json", "--index"]}
    files = sorted(p.relative_to(index) for p in index.rglob("*") if p.is_file())
    outcomes: Counter = Counter()
    tracebacks: list[str] = []
    for name in files:
        for how in DAMAGES:
            copy = work / "damaged"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(index, copy)
            damage(copy / name, how)
            for command, argv in commands.items():
                result = CliRunner().invoke(cli, [*argv, str(copy)])
                text = result.output + (result.stderr or "")
                if result.exception is not None and not isinstance(result.exception, SystemExit) \
                        or "Traceback" in text:
                    tracebacks.append(f"{name} {how} {command}: {type(result.exception).__name__}")
                outcomes[f"{command}: exit {result.exit_code}"] += 1
    return {"files": [str(f) for f in files], "damages": list(DAMAGES), "runs": len(files) * len(DAMAGES) * 2,
            "outcomes": dict(sorted(outcomes.items())), "tracebacks": tracebacks}


def report(result: dict) -> None:
    serve, damaged = result["serve"], result["index"]
    h, c = serve["history"], serve["chunked"]
    print("| attack | outcome |\n|---|---|")
    print(f"| 4 x history of {h['history_items']:,} ids ({h['body_bytes']:,} B) | attack {h['attack_statuses']} in "
          f"{h['attack_seconds']} s; probes meanwhile {h['probe_statuses']}; server CPU {h['server_cpu_s']} s |")
    print(f"| chunked body of {c['megabytes']} MB | {c['status']}; RSS {c['rss_before_mb']} -> {c['rss_after_mb']} MB |")
    for name, status in serve["small"].items():
        print(f"| {name} | {status} |")
    print(f"| server log tracebacks | {serve['server_tracebacks']} |")
    print(f"| damaged index: {len(damaged['files'])} files x {len(damaged['damages'])} ways x 2 commands "
          f"= {damaged['runs']} runs | {damaged['outcomes']}; tracebacks: {len(damaged['tracebacks'])} |")


def main() -> None:
    args = parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    index = build_index(args.cache_dir)
    work = args.cache_dir / "attack-work"
    result = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
              "serve": serve_attacks(index, args), "index": index_attacks(index, work)}
    shutil.rmtree(work, ignore_errors=True)
    report(result)
    write_result(args.out, result)


if __name__ == "__main__":
    sys.exit(main())
