"""The driver: start or join Ray, check the input (check.py), run the actor pools, gather the counts.

    units (todo) ─ map_batches(Generate, concurrency=--concurrency) ─ map_batches(Embed, --encode-actors) ─ counts
    (extractive: one pool of GenerateAndEmbed, --encode-actors, since its generation is encoding)

Resume: items already in the output folder with the same input hash are skipped (check.py); each worker
batch is written as one whole shard, so a killed job loses only the batches in flight. The LLM's limits and
cost ledger live in one `Coordinator` actor for the whole cluster.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

import ray
from pyarrow.fs import FileType
from ray.data import ActorPoolStrategy

from ..encoder import Encoder
from ..errors import ConfigError, P4RError
from ..personas import make_generator
from .check import check, input_files, where
from .files import Location, list_names, read_bytes, write_atomically
from .shards import done_hashes, new_run_id
from .specs import GENERATE_CPUS, PipelineConfig
from .units import TODO, AssemblyRules
from .workers import Embed, Generate, GenerateAndEmbed

PARTS = "_parts"


class WorkerFailed(P4RError):
    """A worker raised (a bug, a lost node, a cluster that stopped answering): the job stopped."""

    exit_code = 75  # EX_TEMPFAIL: what finished is kept; a rerun goes on from there


def root_cause(exc: BaseException) -> str:
    """The worker's own exception (the last `Type: message` line of the error's text that is not Ray's)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Unavailable|Failed)\b.*:", line)
              and not line.startswith("ray.")]
    return (causes[-1] if causes else lines[-1] if lines else type(exc).__name__)[:500]


@dataclass
class PipelineReport:
    items: int = 0
    generated: int = 0
    skipped: int = 0
    personas: int = 0
    failed: int = 0
    stopped: int = 0
    rejected_lines: int = 0
    ignored_reviews: int = 0
    written: int = 0
    bulk_failed: int = 0
    text_fallbacks: int = 0
    shards: int = 0
    workers: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cost: dict | None = None
    cost_table: str | None = None
    rate_limit: dict | None = None
    ray: dict = field(default_factory=dict)


def run(config: PipelineConfig, *, progress: bool = False) -> PipelineReport:
    config.resources.check()
    started = time.monotonic()
    owns_ray = _start_ray(config, progress)
    try:
        report = _run(config, progress)
    finally:
        if owns_ray:
            ray.shutdown()
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _start_ray(config: PipelineConfig, progress: bool) -> bool:
    """Join the cluster at --ray-address, or start a local Ray for this run (stopped at the end)."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": progress, "include_dashboard": False}
    res = config.resources
    if res.ray_address:
        ray.init(address=res.ray_address, **quiet)
    else:
        needed = math.ceil(res.cpus_needed(config.generator.name))
        if res.num_cpus is not None and res.num_cpus < needed:
            raise ConfigError(f"--num-cpus {res.num_cpus} is fewer than the actor pools need ({needed}, counting one "
                              "for Ray Data's own tasks)")
        ray.init(num_cpus=res.num_cpus or max(os.cpu_count() or 1, needed), **quiet)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)
    return True


def _run(config: PipelineConfig, progress: bool) -> PipelineReport:
    output = Location.parse(config.output)
    parts = output.child(PARTS)
    output.filesystem.delete_dir_contents(parts.path, missing_dir_ok=True)
    info = make_generator(config.generator.name, Encoder(config.generator.embedding_model), seed=config.generator.seed,
                          llm=config.generator.llm).info
    rules = AssemblyRules(info.model_dump(mode="json"), ", ".join(config.items), config.ignore_unknown_items,
                          done_hashes(output))
    checked = check(input_files(config.items, config.reviews), rules, skip_invalid=config.skip_invalid)
    report = PipelineReport(items=checked.counts["todo"] + checked.counts["skipped"],
                            skipped=checked.counts["skipped"], rejected_lines=len(checked.rejects),
                            ignored_reviews=checked.counts["ignored"])
    _write_rejects(config, output, checked.rejects)
    coordinator = _coordinator(config)
    todo = where(checked.units, "status", TODO).repartition(target_num_rows_per_block=config.resources.batch_size)
    try:
        counts = _counts(_plan(config, todo, output, parts, coordinator), checked.counts["todo"], progress)
    except ray.exceptions.RayError as exc:
        raise WorkerFailed(f"a worker failed: {root_cause(exc)}; the finished shards in {config.output} are kept, "
                           "rerun the same command to go on") from None
    for name in ("generated", "personas", "failed", "stopped", "written", "bulk_failed", "text_fallbacks"):
        setattr(report, name, counts[name])
    report.shards, report.workers = counts["shards"], sorted(counts["workers"])
    if coordinator is not None:
        report.cost, report.cost_table = ray.get(coordinator.ledger_state.remote())
        report.rate_limit = ray.get(coordinator.rate_limit_state.remote())
    report.ray = {"address": config.resources.ray_address or "local", "cpus": ray.cluster_resources().get("CPU"),
                  "gpus": ray.cluster_resources().get("GPU", 0)}
    _merge_parts(parts, "failed-", output.child("failed.jsonl"))
    if config.cluster is not None:
        _merge_parts(parts, "failed-docs-", Location.parse(str(config.failed_docs)))
    if output.filesystem.get_file_info(parts.path).type == FileType.Directory:
        output.filesystem.delete_dir(parts.path)
    return report


def _coordinator(config: PipelineConfig):
    if config.generator.name != "llm":
        return None
    from .coordination import Coordinator

    llm = config.generator.llm
    return Coordinator.remote(llm.rpm, llm.tpm, config.generator.prices)


def _plan(config: PipelineConfig, todo, output: Location, parts: Location, coordinator):
    res, gen = config.resources, config.generator
    embed_args = {"spec": gen, "vectors": config.vectors, "output": output, "parts": parts,
                  "run_id": new_run_id(), "fmt": config.fmt, "cluster": config.cluster,
                  "num_gpus": res.num_gpus_per_actor}
    pool = {"compute": ActorPoolStrategy(size=res.encode_actors), "num_cpus": res.cpus_per_actor,
            "batch_size": res.batch_size}
    if res.num_gpus_per_actor:
        pool["num_gpus"] = res.num_gpus_per_actor
    if gen.name != "llm":
        return todo.map_batches(GenerateAndEmbed, fn_constructor_kwargs=embed_args, **pool)
    generated = todo.map_batches(
        Generate, fn_constructor_kwargs={"spec": gen, "coordinator": coordinator, "threads": res.requests_per_actor,
                                         "max_cost": config.max_cost},
        # one batch at a time per actor, so batches spread over the pool instead of queueing behind a slow LLM
        compute=ActorPoolStrategy(size=res.concurrency, max_tasks_in_flight_per_actor=1), num_cpus=GENERATE_CPUS,
        batch_size=res.batch_size)
    return generated.map_batches(Embed, fn_constructor_kwargs=embed_args, **pool)


def _counts(dataset, total: int, progress: bool) -> Counter:
    from tqdm import tqdm

    counts: Counter = Counter()
    counts["workers"] = set()
    with tqdm(total=total, desc="p4r items", unit="item", file=sys.stderr, disable=not progress) as bar:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for row in zip(*(batch[c] for c in batch)):
                row = dict(zip(batch, row))
                for name in ("generated", "personas", "failed", "stopped", "written", "bulk_failed", "text_fallbacks"):
                    counts[name] += int(row[name])
                counts["shards"] += bool(row["shard"])
                counts["workers"].update([f"embed {row['worker']}"] + [f"generate {w}" for w in json.loads(row["generated_by"])])
                bar.update(int(row["generated"]) + int(row["failed"]) + int(row["stopped"]) + int(row["bulk_failed"]))
    return counts


def _write_rejects(config: PipelineConfig, output: Location, rejects: list[dict]) -> None:
    if not rejects:
        return
    target = Location.parse(config.rejects) if config.rejects else output.child("rejects.jsonl")
    lines = [{"file": r["file"], "line": r["line"], "error": r["reason"], "raw": r["raw"]} for r in rejects]
    write_atomically(target, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode("utf-8"))


def _merge_parts(parts: Location, prefix: str, target: Location) -> None:
    """One file from the workers' part files, or none: rewritten each run, like the single-machine failed file."""
    names = [n for n in list_names(parts, prefix, (".jsonl",)) if prefix != "failed-" or not n.startswith("failed-docs-")]
    if data := b"".join(read_bytes(parts.child(name)) for name in names):
        write_atomically(target, data)
    elif target.filesystem.get_file_info(target.path).type == FileType.File:
        target.filesystem.delete_file(target.path)


def report_dict(report: PipelineReport) -> dict:
    data = asdict(report)
    data.pop("cost_table")
    return data
