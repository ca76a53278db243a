"""p4r-search: Persona4Rec persona recommendations for Elasticsearch, OpenSearch and an embedded engine.

The common path needs only names from here (each is imported on first use, so `import p4r_search` stays light):

    from p4r_search import EmbeddedBackend, Encoder, Recommender, build_documents, generate_personas, ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Encoder": "encoder",
    "LineReader": "io",
    "load_catalog": "catalog",
    "load_interactions": "catalog",
    "make_generator": "personas",
    "generate_personas": "personas.runner",
    "read_personas": "personas.runner",
    "build_documents": "documents",
    "EmbeddedBackend": "backends.embedded",
    "Recommender": "recommend",
    "SearchOptions": "recommend",
    "UserInput": "recommend",
    "Recommendation": "recommend",
    "ProfileConfig": "profile",
    "PersonaQuery": "query",
    "PersonaClauses": "clauses",
    "ClusterBackend": "backends.cluster",
    "TrainSettings": "training",
    "HeadSettings": "training",
    "save_encoder": "training",
    "train_encoder": "evaluation.encoders",
}

__all__ = [  # noqa: RUF022  (grouped as the data flows)
    "__version__", "Encoder", "LineReader", "load_catalog", "load_interactions", "make_generator",
    "generate_personas", "read_personas", "build_documents", "EmbeddedBackend", "Recommender", "SearchOptions",
    "UserInput", "Recommendation", "ProfileConfig", "PersonaQuery", "PersonaClauses", "ClusterBackend", "TrainSettings", "HeadSettings",
    "save_encoder", "train_encoder",
]

if TYPE_CHECKING:
    from .backends.cluster import ClusterBackend
    from .backends.embedded import EmbeddedBackend
    from .catalog import load_catalog, load_interactions
    from .clauses import PersonaClauses
    from .documents import build_documents
    from .encoder import Encoder
    from .evaluation.encoders import train_encoder
    from .io import LineReader
    from .personas import make_generator
    from .personas.runner import generate_personas, read_personas
    from .profile import ProfileConfig
    from .query import PersonaQuery
    from .recommend import Recommendation, Recommender, SearchOptions, UserInput
    from .training import HeadSettings, TrainSettings, save_encoder


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'p4r_search' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
