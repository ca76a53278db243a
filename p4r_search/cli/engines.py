"""Engine options shared by `index` and `recommend`, and the one place that opens a backend."""

from __future__ import annotations

from pathlib import Path

import click

from ..backends.cluster import ClientTransport, ClusterBackend, DryRunTransport, detect, http_status
from ..backends.connect import ConnectionSettings, make_client
from ..backends.embedded import EmbeddedBackend
from ..clusters.model import Cluster, Distribution, parse_engine, parse_version
from ..errors import ConfigError, P4RError


class ClusterUnavailable(P4RError):
    exit_code = 69  # EX_UNAVAILABLE

ENGINES = ("embedded", "es", "opensearch")
DEFAULT_ASSUMED = {Distribution.ELASTICSEARCH: "8.17.0", Distribution.OPENSEARCH: "2.19.0"}
ASSUMED_TEXT = f"es {DEFAULT_ASSUMED[Distribution.ELASTICSEARCH]}, opensearch {DEFAULT_ASSUMED[Distribution.OPENSEARCH]}"


def engine_options(f):
    options = [
        click.option("--engine", type=click.Choice(ENGINES), default="embedded", show_default=True,
                     help="embedded: a local directory; es / opensearch: a cluster at --url."),
        click.option("--index", "index_name", required=True, help="Embedded: a directory. Cluster: the index name."),
        click.option("--url", envvar="P4R_URL", default=None, help="Cluster URL [env P4R_URL]. Auth from P4R_API_KEY or P4R_USERNAME/P4R_PASSWORD."),
        click.option("--ca-certs", type=click.Path(exists=True, dir_okay=False), default=None, help="CA bundle for TLS."),
        click.option("--insecure", is_flag=True, help="Do not verify TLS certificates (not recommended)."),
        click.option("--os-engine", type=click.Choice(["lucene", "faiss"]), default="lucene", show_default=True,
                     help="OpenSearch vector engine."),
        click.option("--dry-run", is_flag=True,
                     help="Contact no cluster: print every request as one JSON line, for an assumed engine "
                          f"version ({ASSUMED_TEXT}, unless --assume-version)."),
        click.option("--assume-version", default=None, metavar="X.Y.Z",
                     help=f"With --dry-run: the engine version to write requests for [default: {ASSUMED_TEXT}]."),
        click.option("--assume-license", type=click.Choice(["basic", "trial", "enterprise"]), default=None,
                     help="With --dry-run: the Elasticsearch licence [default: basic]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def open_cluster(engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version, assume_license) -> ClusterBackend:
    distribution = parse_engine(engine)
    if dry_run:
        version = parse_version(assume_version or DEFAULT_ASSUMED[distribution])
        licence = (assume_license or "basic") if distribution is Distribution.ELASTICSEARCH else None
        assumption_notice(distribution, assume_version, assume_license)
        return ClusterBackend(DryRunTransport(click.echo), Cluster(distribution, version, licence), index_name, os_engine=os_engine)
    if not url:
        raise ConfigError(f"--engine {engine} needs --url (or P4R_URL)")
    settings = ConnectionSettings(distribution, url, ca_certs=ca_certs, verify_certs=not insecure)
    transport = ClientTransport(make_client(settings), distribution)
    cluster = detect_or_explain(transport, settings)
    if cluster.distribution is not distribution:
        raise ConfigError(f"{url} is {cluster}, not {distribution.value}")
    return ClusterBackend(transport, cluster, index_name, os_engine=os_engine)


def assumption_notice(distribution: Distribution, assume_version: str | None, assume_license: str | None) -> None:
    """Say on stderr what a dry run assumes for want of a cluster to ask."""
    if assume_version is None:
        click.echo(f"dry run: assuming {distribution.value} {DEFAULT_ASSUMED[distribution]}; "
                   "pass --assume-version to change", err=True)
    if assume_license is None and distribution is Distribution.ELASTICSEARCH:
        click.echo("dry run: assuming the basic licence; pass --assume-license to change", err=True)


def detect_or_explain(transport, settings: ConnectionSettings) -> Cluster:
    """Detection is the first request: turn a client failure into one clear line, without secrets."""
    try:
        return detect(transport)
    except Exception as exc:  # noqa: BLE001 (the clients raise their own hierarchies)
        status = http_status(exc)
        if status in (401, 403):
            raise ClusterUnavailable(f"{settings.describe()} refused the credentials (HTTP {status}); check "
                                     "P4R_API_KEY or P4R_USERNAME/P4R_PASSWORD") from None
        if isinstance(status, int):  # the server answered: say what it said (errors carry no credentials)
            raise ClusterUnavailable(f"{settings.describe()} answered HTTP {status}: {str(exc)[:300]}") from None
        raise ClusterUnavailable(f"cannot reach {settings.describe()}: {type(exc).__name__}") from None


def open_backend(engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version, assume_license,
                 *, writable: bool = False):
    if engine == "embedded":
        if dry_run:
            raise ConfigError("--dry-run is for --engine es or opensearch")
        return EmbeddedBackend(Path(index_name), writable=writable)
    return open_cluster(engine, index_name, url, ca_certs, insecure, os_engine, dry_run, assume_version, assume_license)
