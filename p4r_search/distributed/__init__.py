"""The offline pipeline on Ray Data: items and reviews → personas → persona vectors → shards (and, if asked,
bulk writes to a cluster), on a laptop's local Ray or on a Ray cluster, with the same command.

Ray is an optional extra (`pip install 'p4r-search[ray]'`); nothing here imports it until a run starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .pipeline import PipelineReport

RAY_HINT = "the distributed pipeline needs Ray: pip install 'p4r-search[ray]'"


def require_ray() -> None:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(RAY_HINT) from None


def run_pipeline(config, *, progress: bool = False) -> PipelineReport:
    """Run the pipeline (`specs.PipelineConfig`); see `pipeline.run`."""
    require_ray()
    from .pipeline import run

    return run(config, progress=progress)


__all__ = ["RAY_HINT", "require_ray", "run_pipeline"]
