"""The live tests' fixtures (a pytest plugin, see conftest.py): the real engines this session starts, or the
clusters named in the environment, connected; a fresh index on each holding the example subset's personas;
the embedded index of the same personas to hold answers against. Shared by every tests/test_live_*.py module,
so the engines start once."""

from __future__ import annotations

import atexit
import os
import uuid

import numpy as np
import pytest
from conftest import read_jsonl
from live_support import Live, LiveConfig, Target, connect, drop, engines_required, require_client, targets

import engines
from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.catalog import load_items
from p4r_search.documents import build_documents
from p4r_search.io import LineReader
from p4r_search.personas.runner import read_personas

QUERIES = 10
TARGETS = targets()


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def engine_nodes(request) -> dict[str, engines.Node]:
    """The engines this session starts (none when the environment names clusters), stopped at the end."""
    specs = [t.spec for t in TARGETS if t.spec is not None]
    if not specs:
        return {}
    engines.reap_orphans()
    if why := engines.missing_tools(specs):
        (pytest.fail if engines_required() else pytest.skip)(f"no local engines: {why}")
    try:
        nodes = engines.start_all(specs)
    except engines.EngineError as exc:
        pytest.fail(f"the engines did not start:\n{exc}", pytrace=False)
    owner = str(os.getpid())
    engines.save_state(nodes, owner)

    def stop_all() -> None:
        for node in nodes:
            engines.stop(node)
        engines.save_state([], owner)

    atexit.register(stop_all)  # also when the session is interrupted before finalizers run
    request.addfinalizer(stop_all)
    return {node.name: node for node in nodes}


@pytest.fixture(scope="session", params=TARGETS, ids=[t.id for t in TARGETS])
def connection(request, engine_nodes) -> Live:
    """The cluster, connected and detected, and this run's index name. Session-scoped and first in `live`'s
    arguments, so that a wrong URL, password or client fails at once, before anything is built."""
    target: Target = request.param
    require_client(target.engine)
    if target.spec is not None:
        config = LiveConfig.local(engine_nodes[target.spec.name])
    else:
        config = LiveConfig.from_env(target.engine, target.url)
    index = f"p4r-live-{uuid.uuid4().hex[:12]}"
    backend = connect(config, index)
    live = Live(target, config, backend, index)
    request.addfinalizer(lambda: drop(backend, live.created))
    return live


def another_index(live: Live, suffix: str):
    name = f"{live.index}-{suffix}"
    live.created.append(name)
    return connect(live.config, name)


@pytest.fixture(scope="session")
def live(connection, encoder, subset, subset_personas, subset_index, tmp_path_factory) -> Live:
    """A fresh index on the cluster holding the subset's personas (the embedded index's documents), refreshed."""
    backend, index = connection.backend, connection.index
    backend.create_index(encoder.dim)
    records = list(read_personas(subset_personas).values())
    items = load_items(subset["items"], LineReader())[0]
    failed = tmp_path_factory.mktemp("live-failed") / f"{index}.failed.jsonl"
    report = backend.write(build_documents(records, encoder, items), partial=False, failed_path=failed)
    failures = failed.read_text(encoding="utf-8") if failed.exists() else ""
    assert report.failed == 0 and report.written == len(records), f"bulk: {report}\n{failures}"
    backend.refresh()
    return connection


@pytest.fixture(scope="module")
def embedded(subset_index) -> EmbeddedBackend:
    return EmbeddedBackend(subset_index)


@pytest.fixture(scope="module")
def query_vectors(encoder, subset) -> np.ndarray:
    """QUERIES review texts of the subset, spread over its items, encoded: realistic profile vectors."""
    reviews = sorted(read_jsonl(subset["reviews"]), key=lambda r: (r["item_id"], r["review_id"]))
    step = max(1, len(reviews) // QUERIES)
    texts = [r["text"] for r in reviews[::step][:QUERIES]]
    assert len(texts) == QUERIES
    return np.asarray(encoder.encode(texts), dtype=np.float32)


