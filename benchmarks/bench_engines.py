"""Query latency through real OpenSearch and Elasticsearch nodes against the embedded engine, one run.

The catalog is bench_recommend's `50k` (or `--rows 500000`): the 20,000 real review embeddings plus
perturbed copies, 10,000 items x 5 personas = 50,000 persona rows (384-d), written to each backend as `p4r index build` writes them;
the queries are its 200 held-out real reviews. Per backend: bulk seconds, then p50/p99 of
`backend.search(PersonaQuery)` (recommend's online step once the profile vector is made) in `knn` and
`exact` mode, and beside it on the same node, same queries, the engine's own floor: the same nested kNN
sent raw through the official client (with and without the inner hit that names the persona); recall@10
against the exact numpy scan, and the HTTP requests one call sends. Also the paper's online step: exact mode
over 20 candidate ids per query (the exact top 10 and 10 others). Elasticsearch from Maven Central has no
painless: its knn and rerank need none, its exact scan of a catalog this size does and is not timed.

    .venv/bin/python benchmarks/bench_engines.py [--engines opensearch-3,opensearch-2,elasticsearch-8] [--rows N]

The engines run one at a time (P4R_ENGINES_HEAP sets their heap; 2g for 500k rows).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bench_recommend import CATALOGS, K, catalog_rows, documents, real_rows
from common import ROOT, machine, stats, timed_interleaved, write_result

sys.path.insert(0, str(ROOT))
import engines
from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.backends.transport import recorded_requests
from p4r_search.cli.engines import open_cluster
from p4r_search.clusters import dsl
from p4r_search.clusters.capabilities import CapabilityError
from p4r_search.clusters.model import Request
from p4r_search.query import PersonaQuery
from p4r_search.scoring import ExactScorer

PERSONAS = 5


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default=",".join(s.name for s in engines.SPECS))
    ap.add_argument("--rows", type=int, default=CATALOGS["50k"][0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "benchmarks" / "cache")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engines.json")
    return ap.parse_args()


RERANK = 20  # the paper reranks a CF top-20


@dataclass(frozen=True)
class Workload:
    queries: np.ndarray
    truth: list[list[str]]  # the exact top K per query
    candidates: list[tuple[str, ...]]  # per query, RERANK ids to rerank: the exact top K and others, shuffled

    def query(self, mode: str, n: int) -> PersonaQuery:
        """`rerank` is exact mode over the query's candidates (the paper's rerank of a CF top-20)."""
        if mode == "rerank":
            return PersonaQuery(vector=self.queries[n], k=K, mode="exact", candidate_ids=self.candidates[n])
        return PersonaQuery(vector=self.queries[n], k=K, mode=mode)


def workload(queries: np.ndarray, truth: list[list[str]], ids: list[str], seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    candidates = []
    for top in truth:
        others = [ids[i] for i in rng.choice(len(ids), RERANK * 2, replace=False) if ids[i] not in top]
        chosen = [*top, *others[: RERANK - len(top)]]
        candidates.append(tuple(chosen[i] for i in rng.permutation(len(chosen))))
    return Workload(queries, truth, candidates)


def p4r_search_fn(backend, mode: str, work: Workload):
    """p4r's `backend.search` in `mode`; None where the cluster refuses it (exact over a large index
    without painless)."""
    try:
        backend.search(work.query(mode, 0))
    except CapabilityError as exc:
        print(f"  {mode}: refused ({exc})", flush=True)
        return None
    return lambda n: [h.item_id for h in backend.search(work.query(mode, n))]


def raw_body(engine: str, vector, inner_hits: bool) -> dict:
    """The engine's own nested kNN as a team would write it by hand: the same k, breadth and filters-free
    query as p4r's knn mode (k = num_candidates 100, 200 explored), the top 10 returned. With `inner_hits`
    it asks for what p4r's answer holds (the best persona's fields and the item's title); without, for ids
    and scores only (`_source` off): the engine's floor."""
    persona = {"size": 1, "_source": {"includes": [f"personas.{f}" for f in dsl.PERSONA_FIELDS]}}
    source = ["title"] if inner_hits else False
    if engine == "es":
        knn = {"field": "personas.vector", "query_vector": vector, "k": 100, "num_candidates": 200}
        return {"size": K, "_source": source, "knn": {**knn, **({"inner_hits": persona} if inner_hits else {})}}
    knn = {"personas.vector": {"vector": vector, "k": 100, "method_parameters": {"ef_search": 200},
                               "expand_nested_docs": True}}
    nested = {"path": "personas", "score_mode": "max", "query": {"knn": knn}}
    return {"size": K, "_source": source,
            "query": {"nested": {**nested, **({"inner_hits": persona} if inner_hits else {})}}}


def raw_fn(backend, engine: str, index: str, inner_hits: bool, work: Workload):
    client = backend.transport.client

    def search(n):
        body = raw_body(engine, [float(x) for x in work.queries[n]], inner_hits)
        if engine == "es":  # elasticsearch-py takes the body's sections as arguments
            answer = client.search(index=index, size=body["size"], source=body["_source"], knn=body["knn"])
        else:
            answer = client.search(index=index, body=body)
        return [h["_id"] for h in answer["hits"]["hits"]]
    search.__name__ = "raw"
    return search


def requests_per_call(backend, query: PersonaQuery) -> int | None:
    """HTTP requests one `backend.search` sends, counted on its transport (after the first call, which also
    reads what the index holds once)."""
    transport = getattr(backend, "transport", None)
    if transport is None:
        return None
    with recorded_requests(transport) as sent:
        backend.search(query)
    return len(sent)


WAYS = {"p4r search knn": "knn", "p4r search exact": "exact", f"p4r rerank {RERANK} candidates": "rerank"}


def measure(name: str, backend, work: Workload, load_s: float, engine: str | None = None,
            index: str | None = None) -> list[dict]:
    """Every way of searching this backend, timed interleaved over the same queries (so the ratios between
    them hold on a loaded machine)."""
    fns = {what: (mode, p4r_search_fn(backend, mode, work)) for what, mode in WAYS.items()}
    if engine is not None:
        fns["raw nested kNN, inner hits"] = (None, raw_fn(backend, engine, index, True, work))
        fns["raw nested kNN"] = (None, raw_fn(backend, engine, index, False, work))
    fns = {what: (mode, fn) for what, (mode, fn) in fns.items() if fn is not None}
    timings = timed_interleaved({what: fn for what, (_, fn) in fns.items()}, list(range(len(work.queries))))
    rows = []
    for what, (mode, _) in fns.items():
        ms, got = timings[what]
        recall = float(np.mean([len(set(g) & set(t)) / K for g, t in zip(got, work.truth)]))
        requests = requests_per_call(backend, work.query(mode, 0)) if mode else 1
        rows.append({"backend": name, "mode": mode or "raw", "what": what, "load_s": load_s, "recall_at_10": recall,
                     "requests_per_call": requests, **stats(ms)})
        print(f"  {name:28s} {what:28s} p50 {rows[-1]['p50_ms']:7.2f} ms  p99 {rows[-1]['p99_ms']:7.2f} ms  "
              f"recall@10 {recall:.3f}  requests {requests}", flush=True)
    return rows


def bench_node(node, dim: int, ids, vectors, model, work: Workload) -> list[dict]:
    index = f"p4r-bench-{uuid.uuid4().hex[:8]}"
    backend = open_cluster(node.engine, index, node.url, None, False, "lucene", False, None, None)
    backend.create_index(dim)
    start = time.perf_counter()
    report = backend.write(documents(ids, vectors, model), partial=False, failed_path=None)
    backend.refresh()
    load_s = time.perf_counter() - start
    assert report.failed == 0, report
    rows = measure(f"{node.name} {node.version}", backend, work, load_s, node.engine, index)
    backend.transport.send(Request("DELETE", f"/{index}"))
    return rows


def main() -> None:
    args = parse_args()
    real, queries, model = real_rows(argparse.Namespace(seed=args.seed, cache_dir=args.cache_dir))
    vectors = catalog_rows(real, args.rows, "noise", args.seed).reshape(-1, PERSONAS, real.shape[1])
    ids = [f"i{n}" for n in range(len(vectors))]
    scorer = ExactScorer(ids, list(vectors))
    truth = [[s.item_id for s in scorer.top_k(q, K)] for q in queries]
    work = workload(queries, truth, ids, args.seed)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        local = EmbeddedBackend(Path(folder) / "index", writable=True)
        local.upsert(documents(ids, vectors, model))
        results += measure("embedded", EmbeddedBackend(Path(folder) / "index"), work, time.perf_counter() - start)
    for spec in [s for s in engines.SPECS if s.name in args.engines.split(",")]:
        node = engines.start(spec)  # one at a time: each engine has the machine (and its heap) to itself
        try:
            results += bench_node(node, real.shape[1], ids, vectors, model, work)
        finally:
            engines.stop(node)
    print()
    print("| backend | what is timed | load s | p50 ms | p99 ms | recall@10 | requests per call |\n"
          "|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['backend']} | {r['what']} | {r['load_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['recall_at_10']:.3f} | {r['requests_per_call'] if r['requests_per_call'] is not None else ''} |")
    write_result(args.out, {"machine": machine(), "rows": args.rows, "queries": len(queries), "results": results})


if __name__ == "__main__":
    main()
