"""`p4r pipeline run --engine … --url … --index …`: the Ray workers bulk-write the documents to a real cluster
(OpenSearch 3.x and 2.x, Elasticsearch 8.x on loopback, or those named in the environment), with the
single-machine bulk code, and the cluster then holds what the shards hold."""

from __future__ import annotations

from live_fixtures import another_index
from ray_support import pipeline, require_ray, shards

from p4r_search.catalog import load_items
from p4r_search.io import LineReader

require_ray()


def test_the_workers_write_every_document_to_the_cluster(connection, subset, tmp_path):
    backend = another_index(connection, "pipeline")
    config = connection.config
    tls = (["--ca-certs", config.ca_certs] if config.ca_certs else []) + (["--insecure"] if config.insecure else [])
    with config.auth_env():  # the workers read the credentials from the environment, as the CLI does
        summary, result = pipeline(subset["items"], subset["reviews"], tmp_path / "out", "--engine", config.engine,
                                   "--url", config.url, "--index", backend.index, "--num-cpus", "3",
                                   "--failed-docs", tmp_path / "failed.jsonl", *tls)
    assert (summary["written"], summary["bulk_failed"], summary["generated"]) == (12, 0, 12)
    assert "created it with the p4r mapping" in result.stderr
    assert not (tmp_path / "failed.jsonl").exists()
    backend.refresh()
    items = load_items(subset["items"], LineReader())[0]
    for item_id, line in shards(tmp_path / "out").items():
        card = backend.item_card(item_id)
        assert card.title == items[item_id].title
        assert [p.persona.persona_id for p in card.personas] == [p.persona_id for p in line.personas]
