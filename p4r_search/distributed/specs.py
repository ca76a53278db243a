"""What a pipeline run is asked to do: plain, picklable settings that the driver sends to every worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..persona_vectors import DEFAULT_EVIDENCE_PRIOR


@dataclass(frozen=True)
class GeneratorSpec:
    name: str = "extractive"  # extractive | llm
    seed: int = 0
    embedding_model: str | None = None  # None: the default model (P4R_MODEL or the packaged one)
    llm: object | None = None  # LLMSettings for the llm generator
    cache_dir: str | None = None  # the LLM answer cache: shared storage on a cluster
    prices: object | None = None  # PriceTable


@dataclass(frozen=True)
class VectorSpec:
    kind: str = "evidence"  # text | evidence | blend
    evidence_prior: float = DEFAULT_EVIDENCE_PRIOR


@dataclass(frozen=True)
class ClusterSpec:
    """Where workers bulk-write documents: the connection (secrets stay in each node's environment), the
    cluster as the driver detected it, the index."""

    settings: object  # backends.connect.ConnectionSettings
    cluster: object  # clusters.model.Cluster
    index: str
    os_engine: str = "lucene"
    chunk_size: int = 500


GENERATE_CPUS = 0.5


@dataclass(frozen=True)
class Resources:
    ray_address: str | None = None  # None: a local Ray started for this run
    num_cpus: int | None = None  # local Ray only: logical CPUs (default: the machine's)
    encode_actors: int = 1
    cpus_per_actor: float = 1.0  # each encode actor's CPUs (and torch threads)
    num_gpus_per_actor: float = 0.0
    concurrency: int = 1  # llm: generation actors (GENERATE_CPUS each: they mostly wait on the LLM)
    requests_per_actor: int = 4  # llm: items in flight in each generation actor
    batch_size: int = 32  # items per worker batch: one shard file each, the unit of a resumed run

    def cpus_needed(self, generator: str) -> float:
        """CPUs the actor pools hold, plus one for Ray Data's own tasks (without it a run waits for ever)."""
        return self.encode_actors * self.cpus_per_actor + (self.concurrency * GENERATE_CPUS if generator == "llm" else 0) + 1

    def check(self) -> None:
        for name in ("encode_actors", "concurrency", "requests_per_actor", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.cpus_per_actor <= 0:
            raise ConfigError(f"cpus-per-actor must be above 0, got {self.cpus_per_actor}")
        if self.num_gpus_per_actor < 0:
            raise ConfigError(f"num-gpus-per-actor must not be negative, got {self.num_gpus_per_actor}")
        if self.ray_address and self.num_cpus is not None:
            raise ConfigError("--num-cpus sizes a local Ray; a cluster at --ray-address has its own")


@dataclass(frozen=True)
class PipelineConfig:
    items: tuple[str, ...]
    reviews: tuple[str, ...]
    output: str
    fmt: str = "jsonl"
    generator: GeneratorSpec = field(default_factory=GeneratorSpec)
    vectors: VectorSpec = field(default_factory=VectorSpec)
    resources: Resources = field(default_factory=Resources)
    cluster: ClusterSpec | None = None
    skip_invalid: bool = False
    rejects: str | None = None  # default: OUTPUT/rejects.jsonl
    ignore_unknown_items: bool = False
    max_cost: float | None = None
    failed_docs: Path | None = None
