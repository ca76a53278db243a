"""Running `p4r pipeline run` in tests: always in a child process, as a user runs it.

Why a child process: pytest's process imports usearch (the embedded engine) long before, and usearch
imported before `ray.init` aborts Ray's start (a C++ regex error); the CLI imports it only on first use.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from p4r_search.distributed.files import Location
from p4r_search.distributed.shards import iter_shard_lines, read_shards

RAY_MISSING = "Ray is not installed: `make test` installs the ray extra (pip install 'p4r-search[ray]')"


def require_ray() -> None:
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("P4R_REQUIRE_RAY") == "1":  # CI installs the extra: there these tests must run
            pytest.fail(RAY_MISSING, pytrace=False)
        pytest.skip(RAY_MISSING, allow_module_level=True)


def p4r(*args, expect: int = 0, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "p4r_search", *map(str, args)], capture_output=True, text=True, check=False,
                            timeout=timeout, env={**os.environ, **(env or {})})
    assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def pipeline(items, reviews, out, *extra, expect: int = 0, **kwargs) -> tuple[dict, subprocess.CompletedProcess]:
    """Run the pipeline with --json; returns (summary, the finished process)."""
    result = p4r("pipeline", "run", "--items", items, "--reviews", reviews, "-o", out, "--no-progress", "--json",
                 *extra, expect=expect, **kwargs)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return (json.loads(lines[-1]) if lines else {}), result


def shards(out: Path) -> dict:
    return read_shards(Location.parse(str(out)))


def shard_line_count(out: Path) -> int:
    return sum(1 for _ in iter_shard_lines(Location.parse(str(out))))


def without_vectors(line) -> dict:
    return line.model_dump(exclude={"vectors"})
