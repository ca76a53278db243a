"""Versioned prompt files, shipped inside the package (`prompts/<name>.<version>.md`).

A prompt file has a leading HTML comment (ignored), then `# system` and `# user` sections. Placeholders are
`{name}`; every other brace is literal, so JSON examples need no escaping. The version is part of each
persona's metadata and of the cache key, so editing a prompt means adding a new version file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from ...errors import ChoiceError

SYNTHESIS = "persona_synthesis"
ASPECTS = "review_aspects"
_SECTION = re.compile(r"^# (system|user)\s*$", re.MULTILINE)
_COMMENT = re.compile(r"\A\s*<!--.*?-->\s*", re.DOTALL)


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    system: str
    user: str

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"

    def messages(self, **values: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": _fill(self.user, values)},
        ]


def available(name: str) -> list[str]:
    files = resources.files(__package__).joinpath("prompts").iterdir()
    return sorted(f.name[len(name) + 1 : -3] for f in files if f.name.startswith(name + ".") and f.name.endswith(".md"))


@cache
def load_prompt(name: str, version: str) -> Prompt:
    versions = available(name)
    if version not in versions:
        raise ChoiceError(f"{name} prompt version", version, versions)
    text = resources.files(__package__).joinpath("prompts", f"{name}.{version}.md").read_text("utf-8")
    parts = _SECTION.split(_COMMENT.sub("", text))
    sections = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
    return Prompt(name=name, version=version, system=sections["system"], user=sections["user"])


def _fill(template: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        return values[key] if key in values else match.group(0)

    return re.sub(r"\{([a-z_]+)\}", replace, template)
