"""Secrets out of every message that is shown or written: the values of the secret environment variables,
and anything shaped like a credential (`Bearer …`, `Basic …`, `sk-…`), which some gateways echo back in
their errors (an OpenAI-compatible endpoint answering `Incorrect API key provided: Bearer sk-…`)."""

from __future__ import annotations

import os
import re

SECRET_ENV = ("OPENAI_API_KEY", "P4R_API_KEY", "P4R_PASSWORD", "P4R_SERVE_API_KEY")
HIDDEN = "[redacted]"
_CREDENTIAL = re.compile(
    r"(?i)\b(?P<scheme>bearer|basic|apikey|token)(?P<gap>\s+)[A-Za-z0-9._~+/=:-]{4,}"  # RFC 7235 credentials
    r"|\bsk-[A-Za-z0-9_-]{4,}"  # OpenAI-style keys, wherever they appear
)
_SHORTEST_SECRET = 4  # a shorter value ("x", "1") would blank ordinary words; the pattern still catches its shape


def _credential(match: re.Match) -> str:
    return f"{match['scheme']}{match['gap']}{HIDDEN}" if match["scheme"] else HIDDEN


def redact(text: str) -> str:
    """`text` without the environment's secrets and without credential-shaped tokens."""
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= _SHORTEST_SECRET:
            text = text.replace(value, HIDDEN)
    return _CREDENTIAL.sub(_credential, text)
