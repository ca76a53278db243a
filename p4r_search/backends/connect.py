"""Clients for Elasticsearch and OpenSearch: auth from the environment, TLS verified by default.

Environment: P4R_API_KEY (Elasticsearch API key, or OpenSearch is not supported with it), or
P4R_USERNAME with P4R_PASSWORD (basic auth). Secrets are never printed: `describe()` redacts them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..clusters.model import Distribution
from ..errors import ConfigError

API_KEY_ENV = "P4R_API_KEY"
USERNAME_ENV = "P4R_USERNAME"
PASSWORD_ENV = "P4R_PASSWORD"


@dataclass(frozen=True)
class ConnectionSettings:
    distribution: Distribution
    url: str
    ca_certs: str | None = None
    verify_certs: bool = True
    timeout: float = 30.0

    def auth(self) -> dict[str, Any]:
        api_key, user, password = (os.environ.get(k) for k in (API_KEY_ENV, USERNAME_ENV, PASSWORD_ENV))
        if api_key:
            if self.distribution is Distribution.OPENSEARCH:
                raise ConfigError(f"{API_KEY_ENV} is for Elasticsearch; use {USERNAME_ENV}/{PASSWORD_ENV} for OpenSearch")
            return {"api_key": api_key}
        if user or password:
            if not (user and password):
                raise ConfigError(f"set both {USERNAME_ENV} and {PASSWORD_ENV}")
            return {"basic_auth" if self.distribution is Distribution.ELASTICSEARCH else "http_auth": (user, password)}
        return {}

    def describe(self) -> str:
        """Where and how, never with a secret: user info in the URL is dropped."""
        kind = "api key" if os.environ.get(API_KEY_ENV) else "basic auth" if os.environ.get(USERNAME_ENV) else "no auth"
        return f"{self.distribution.value} at {redact(self.url)} ({kind}, TLS verify {'on' if self.verify_certs else 'OFF'})"


def make_client(settings: ConnectionSettings, max_retries: int = 3):
    """The official client, retrying 429/502/503/504 on whole requests."""
    tls: dict[str, Any] = {"verify_certs": settings.verify_certs}
    if settings.ca_certs:
        tls["ca_certs"] = settings.ca_certs
    if settings.distribution is Distribution.ELASTICSEARCH:
        Elasticsearch = client_class("elasticsearch", "Elasticsearch", "es")
        return Elasticsearch(settings.url, request_timeout=settings.timeout, max_retries=max_retries,
                             retry_on_status=(429, 502, 503, 504), retry_on_timeout=True, **tls, **settings.auth())
    OpenSearch = client_class("opensearchpy", "OpenSearch", "opensearch")
    return OpenSearch(hosts=[settings.url], timeout=settings.timeout, max_retries=max_retries,
                      retry_on_status=(429, 502, 503, 504), retry_on_timeout=True, ssl_show_warn=settings.verify_certs,
                      use_ssl=settings.url.startswith("https"), **tls, **settings.auth())


def client_class(module: str, name: str, extra: str) -> type:
    """The official client's class, or a ConfigError with the install line when it is not installed."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        raise ConfigError(f"this engine needs the {module} client, which is not installed: "
                          f"pip install 'p4r-search[{extra}]'") from None


def redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def client_distribution(client: Any) -> Distribution:
    """Which engine an official client speaks to, from the client's package."""
    module = type(client).__module__
    if module.startswith("opensearchpy"):
        return Distribution.OPENSEARCH
    if module.startswith("elasticsearch"):
        return Distribution.ELASTICSEARCH
    raise TypeError(f"expected an elasticsearch-py or opensearch-py client, got {type(client).__name__}")
