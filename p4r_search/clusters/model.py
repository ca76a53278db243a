"""Requests and the cluster they are meant for."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..errors import ChoiceError, ConfigError


class Distribution(str, Enum):
    ELASTICSEARCH = "elasticsearch"
    OPENSEARCH = "opensearch"


ENGINE_ALIASES = {"es": Distribution.ELASTICSEARCH, "elasticsearch": Distribution.ELASTICSEARCH,
                  "opensearch": Distribution.OPENSEARCH, "os": Distribution.OPENSEARCH}
LICENSES = ("basic", "trial", "gold", "platinum", "enterprise")


def parse_engine(name: str) -> Distribution:
    try:
        return ENGINE_ALIASES[name.lower()]
    except KeyError:
        raise ChoiceError("engine", name, ["es", "opensearch"]) from None


def parse_version(text: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:[-+].*)?", text.strip())
    if not match:
        raise ConfigError(f"a version is MAJOR.MINOR.PATCH, got {text!r}")
    return int(match[1]), int(match[2]), int(match[3] or 0)


@dataclass(frozen=True)
class Cluster:
    """What is on the other end: detected on connect, or assumed for --dry-run."""

    distribution: Distribution
    version: tuple[int, int, int]
    license: str | None = None  # Elasticsearch only
    # plugins and modules on every node (GET /_nodes/plugins); None: not known (--dry-run, or not allowed to ask)
    plugins: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.license is not None and self.license not in LICENSES:
            raise ChoiceError("licence", self.license, LICENSES)

    def __str__(self) -> str:
        lic = f" ({self.license} licence)" if self.license else ""
        return f"{self.distribution.value} {'.'.join(map(str, self.version))}{lic}"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: Any = None  # a dict, or for _bulk a list of action and source objects
    params: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.params:
            out["params"] = self.params
        if self.body is not None:
            out["body"] = self.body
        return out
