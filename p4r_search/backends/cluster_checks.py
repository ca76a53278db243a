"""What a cluster index holds, asked cheaply: for skipped ids, an empty result's diagnosis, and a build's target.

A mixin of `ClusterBackend` (backends/cluster.py), kept apart to keep that module small. It sends the
pure requests of `clusters/checks.py` through the backend's transport.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..clusters import checks, dsl
from ..errors import ConfigError
from .transport import DryRunTransport, http_status

log = logging.getLogger(__name__)


class IndexChecks:
    """Needs `transport`, `index`, `mapping()` and `create_index(dim)` (ClusterBackend has them)."""

    transport: Any
    index: str

    def existing_ids(self, item_ids: Sequence[str]) -> set[str]:
        """Which of these items have personas here (a dry run assumes all do: it asks nothing)."""
        if isinstance(self.transport, DryRunTransport) or not item_ids:
            return set(item_ids)
        return checks.parse_present(self.transport.send(checks.present_ids(self.index, item_ids)))

    def count_items(self, filters: Mapping[str, Sequence[str]], candidate_ids: Sequence[str] | None = None,
                    exclude_ids: Iterable[str] = ()) -> int:
        """How many documents with personas pass the filters, are among the candidates and are not excluded."""
        restriction = checks.restriction(filters, candidate_ids, exclude_ids)
        return int(self.transport.send(checks.count_items(self.index, restriction)).get("count", 0))

    def filter_values(self, field: str, like: str | None = None) -> list[str] | None:
        """Values of a keyword field, most common first (None where the cluster cannot aggregate on it)."""
        try:
            return checks.parse_values(self.transport.send(checks.filter_values(self.index, field, like)), like)
        except Exception as exc:  # noqa: BLE001 - e.g. a text field in an attached index: not known
            log.info("could not list the values of %s (%s)", field, exc)
            return None

    def prepare_build(self, dim: int) -> bool:
        """`index build` writes whole documents, which need the p4r mapping: creates a missing index with it
        (True); refuses an index without a nested `personas` field with a vector of these dims, saying what to do.
        Without this, a bulk write would create the index with a dynamic mapping: `personas` a plain object and
        its vectors float arrays, which no kNN or nested query can use."""
        try:
            current = self.mapping()
        except Exception as exc:
            if http_status(exc) != 404:
                raise
            self.create_index(dim)
            return True
        existing = dsl.existing_personas(current)
        if existing is not None:
            try:
                check_compatible(existing, dim, self.index)
            except ConfigError as exc:
                raise ConfigError(f"{exc}, so `index build` cannot write persona vectors into it: build into a new "
                                  "--index (build creates it with the p4r mapping), or delete this one first") from None
        if existing is None or "vector" not in existing.get("properties", {}):
            raise ConfigError(f"index {self.index!r} exists without a nested 'personas' field with vectors, and "
                              "`index build` replaces whole documents: to add personas to its documents, keeping "
                              "their fields, run `p4r index attach`; or build into a new --index (build creates it)")
        return False


def check_compatible(existing: dict[str, Any], dim: int, index: str) -> None:
    vector = existing.get("properties", {}).get("vector", {})
    if existing.get("type") != "nested":
        raise ConfigError(f"index {index!r} already has a 'personas' field of type {existing.get('type', 'object')!r}, not nested")
    if vector and vector.get("type") not in ("dense_vector", "knn_vector"):
        raise ConfigError(f"index {index!r}: personas.vector is a {vector.get('type')!r} field, not a vector")
    have = vector.get("dims") or vector.get("dimension")
    if have is not None and int(have) != dim:
        raise ConfigError(f"index {index!r}: personas.vector has {have} dimensions; the encoder gives {dim}")
