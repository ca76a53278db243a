"""Query latency through real OpenSearch and Elasticsearch nodes against the embedded engine, one run.

The catalog is bench_recommend's `50k`: the 20,000 real review embeddings plus perturbed copies, 10,000
items x 5 personas = 50,000 persona rows (384-d), written to each backend as `p4r index build` writes them;
the queries are its 200 held-out real reviews. Per backend: bulk seconds, then p50/p99 of
`backend.search(PersonaQuery)` (recommend's online step once the profile vector is made) in `knn` and
`exact` mode, and recall@10 against the exact numpy scan. Elasticsearch from Maven Central has no painless,
so there only kNN stage one (the `knn` request p4r sends, without the exact rescore) is timed.

    .venv/bin/python benchmarks/bench_engines.py [--engines opensearch-3,opensearch-2,elasticsearch-8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from bench_recommend import CATALOGS, K, catalog_rows, documents, real_rows
from common import ROOT, machine, stats, timed, write_result

sys.path.insert(0, str(ROOT))
import engines
from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.cli.engines import open_cluster
from p4r_search.clusters import elasticsearch
from p4r_search.clusters.capabilities import supports
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


def query_fn(backend, mode: str):
    """Search in `mode`; for a cluster without painless, kNN stage one's own request."""
    cluster = getattr(backend, "cluster", None)
    if cluster is not None and not supports(cluster, "painless"):
        if mode != "knn":
            return None

        def stage_one(vector):
            proposal = elasticsearch.vector_proposal(backend.index, cluster, PersonaQuery(vector=vector, k=K))
            return [h["_id"] for h in backend.transport.send(proposal.request)["hits"]["hits"]][:K]
        return stage_one
    return lambda vector: [h.item_id for h in backend.search(PersonaQuery(vector=vector, k=K, mode=mode))]


def measure(name: str, backend, queries: np.ndarray, truth: list[list[str]], load_s: float) -> list[dict]:
    rows = []
    for mode in ("knn", "exact"):
        fn = query_fn(backend, mode)
        if fn is None:
            continue
        ms, got = timed(fn, list(queries))
        recall = float(np.mean([len(set(g) & set(t)) / K for g, t in zip(got, truth)]))
        what = "kNN stage one only (no painless)" if fn.__name__ == "stage_one" else f"search {mode}"
        rows.append({"backend": name, "mode": mode, "what": what, "load_s": load_s, "recall_at_10": recall,
                     **stats(ms)})
        print(f"  {name:28s} {what:34s} p50 {rows[-1]['p50_ms']:7.2f} ms  p99 {rows[-1]['p99_ms']:7.2f} ms  "
              f"recall@10 {recall:.3f}", flush=True)
    return rows


def main() -> None:
    args = parse_args()
    real, queries, model = real_rows(argparse.Namespace(seed=args.seed, cache_dir=args.cache_dir))
    vectors = catalog_rows(real, args.rows, "noise", args.seed).reshape(-1, PERSONAS, real.shape[1])
    ids = [f"i{n}" for n in range(len(vectors))]
    scorer = ExactScorer(ids, list(vectors))
    truth = [[s.item_id for s in scorer.top_k(q, K)] for q in queries]
    results = []
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        local = EmbeddedBackend(Path(folder) / "index", writable=True)
        local.upsert(documents(ids, vectors, model))
        results += measure("embedded", EmbeddedBackend(Path(folder) / "index"), queries, truth,
                           time.perf_counter() - start)
    specs = [s for s in engines.SPECS if s.name in args.engines.split(",")]
    nodes = engines.start_all(specs)
    try:
        for node in nodes:
            index = f"p4r-bench-{uuid.uuid4().hex[:8]}"
            backend = open_cluster(node.engine, index, node.url, None, False, "lucene", False, None, None)
            backend.create_index(real.shape[1])
            start = time.perf_counter()
            report = backend.write(documents(ids, vectors, model), partial=False, failed_path=None)
            backend.refresh()
            load_s = time.perf_counter() - start
            assert report.failed == 0, report
            results += measure(f"{node.name} {node.version}", backend, queries, truth, load_s)
            backend.transport.send(Request("DELETE", f"/{index}"))
    finally:
        for node in nodes:
            engines.stop(node)
    print()
    print("| backend | what is timed | load s | p50 ms | p99 ms | recall@10 |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['backend']} | {r['what']} | {r['load_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['recall_at_10']:.3f} |")
    write_result(args.out, {"machine": machine(), "rows": args.rows, "queries": len(queries), "results": results})


if __name__ == "__main__":
    main()
