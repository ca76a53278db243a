"""Every file of a real index damaged five ways, and every command that opens an index asked about it: each
answers as the undamaged index does, or exits 74 naming the damaged file and what to run, never with a
traceback. In-process through click's CliRunner (one Python, one import of torch), one case per
(file, damage, command)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_embedded import doc

from p4r_search.backends.embedded import EmbeddedBackend
from p4r_search.cli import cli

# Every file of an index, by pattern (a test below holds that they cover the subset index).
STORE_FILES = ["store/meta.json", "store/.managed.json", "store/.tantivy-meta.lock", "store/.tantivy-writer.lock",
               "store/*.fast", "store/*.fieldnorm", "store/*.idx", "store/*.pos", "store/*.store", "store/*.term"]
CACHE_FILES = ["vectors-*/rows.npz", "vectors-*/payloads.zlib", "vectors-*/hnsw.usearch", "vectors-*/vectors.npy",
               "vectors-*/checksums.json"]
# In an index whose last write (of a replaced item: a deletion) was killed before its cache was saved
KILLED_FILES = ["pending-*.npz", "store/*.del"]


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    for i in range(at, min(at + 16, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGES = {
    "first-bytes-flipped": lambda p: flip(p, 0),
    "middle-bytes-flipped": lambda p: flip(p, p.stat().st_size // 2),
    "truncated-to-half": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "emptied": lambda p: p.write_bytes(b""),
    "deleted": lambda p: p.unlink(),
}


def commands(index: Path, subset: dict) -> dict[str, list[str]]:
    recommend = ["recommend", "--index", str(index), "--interactions", str(subset["interactions"]),
                 "--user", "demo-petite-dresses", "-k", "5"]
    return {
        "info": ["index", "info", "--index", str(index)],
        "info-json": ["index", "info", "--index", str(index), "--json"],
        "recommend": recommend,
        "recommend-json": [*recommend, "--json"],
        "repair": ["index", "repair", "--index", str(index)],
    }


def invoke(args: list[str]):
    return CliRunner().invoke(cli, args, catch_exceptions=True)


def one_file(index: Path, pattern: str) -> Path:
    found = sorted(index.glob(pattern))
    assert len(found) == 1, f"{pattern}: {found}"
    return found[0]


def killed_write_index(source: Path, target: Path) -> Path:
    """A copy of the index whose last write was killed after the store's commit: it has a pending file."""
    shutil.copytree(source, target)
    backend = EmbeddedBackend(target, writable=True)
    replaced = backend.item_ids()[0]
    extra = doc(replaced, np.random.default_rng(5).normal(size=(2, backend.meta.dim)), model=backend.meta.model)

    def killed(cache, generation):
        raise KeyboardInterrupt

    backend._save = killed
    with pytest.raises(KeyboardInterrupt):
        backend.upsert([extra])
    return target


def unchecked_index(source: Path, target: Path) -> Path:
    """A copy without checksums.json, as written before it existed: what reads its files must tell damage."""
    shutil.copytree(source, target)
    one_file(target, "vectors-*/checksums.json").unlink()
    return target


@pytest.fixture(scope="module")
def indexes(subset_index, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("damage-sources")
    return {"whole": subset_index, "killed": killed_write_index(subset_index, folder / "killed"),
            "unchecked": unchecked_index(subset_index, folder / "unchecked")}


@pytest.fixture(scope="module")
def undamaged(indexes, subset, tmp_path_factory) -> dict:
    """What each command answers on an undamaged copy of each index (its own copy: repair writes)."""
    answers = {}
    for kind, source in indexes.items():
        for name in commands(source, subset):
            copy = tmp_path_factory.mktemp("undamaged") / "idx"
            shutil.copytree(source, copy)
            result = invoke(commands(copy, subset)[name])
            answers[kind, name] = (result.exit_code, result.stdout.replace(str(copy), "INDEX"))
            if name == "repair":
                answers[kind, "after-repair"] = invoke(commands(copy, subset)["recommend-json"]).stdout
    return answers


def test_the_patterns_cover_every_file_of_the_index(indexes):
    index = indexes["whole"]
    files = {p for p in index.rglob("*") if p.is_file()}
    assert files == {p for pattern in STORE_FILES + CACHE_FILES for p in index.glob(pattern)}
    for pattern in STORE_FILES + CACHE_FILES:
        one_file(index, pattern)
    for pattern in KILLED_FILES:
        one_file(indexes["killed"], pattern)


def cases():
    for kind, patterns in (("whole", STORE_FILES + CACHE_FILES), ("killed", KILLED_FILES),
                           ("unchecked", CACHE_FILES[:-1])):
        for pattern in patterns:
            for damage in DAMAGES:
                for command in ("info", "info-json", "recommend", "recommend-json", "repair"):
                    yield pytest.param(kind, pattern, damage, command, id=f"{kind}:{pattern}:{damage}:{command}")


@pytest.mark.parametrize(("kind", "pattern", "damage", "command"), list(cases()))
def test_a_damaged_file_is_named_or_does_not_matter(indexes, undamaged, subset, tmp_path, kind, pattern, damage,
                                                     command):
    index = tmp_path / "idx"
    shutil.copytree(indexes[kind], index)
    target = one_file(index, pattern)
    name = target.relative_to(index).as_posix()
    DAMAGES[damage](target)
    result = invoke(commands(index, subset)[command])
    where = f"{name} {damage}, {command}: exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{where}\n{''.join(traceback.format_exception(result.exception))}")
    assert "Traceback" not in result.output and "Aborted!" not in result.output, where
    if result.exit_code == 74:
        message = result.stderr
        if command.endswith("json"):
            message = json.loads(result.stderr)["error"]["message"]
            assert json.loads(result.stderr)["error"]["exit_code"] == 74
        else:
            assert result.stderr.startswith("error: "), where
        expected_code = undamaged[kind, command][0]
        if expected_code != 74:
            assert name in message, where
            assert "p4r index repair" in message or "p4r index build" in message, where
    else:
        assert (result.exit_code, result.stdout.replace(str(index), "INDEX")) == undamaged[kind, command], where
    if command == "repair" and result.exit_code == 0:  # what repair rebuilt answers as the undamaged index does
        after = invoke(commands(index, subset)["recommend-json"])
        assert after.stdout == undamaged[kind, "after-repair"], where


def test_an_emptied_vectors_file_is_a_clear_error_from_the_real_command(subset_index, tmp_path):
    """Not click's bare `Aborted!` (numpy's EOFError reaching click), through the real `p4r` process."""
    index = tmp_path / "idx"
    shutil.copytree(subset_index, index)
    one_file(index, "vectors-*/vectors.npy").write_bytes(b"")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    p4r = Path(sys.executable).with_name("p4r")
    run = subprocess.run([str(p4r), "index", "info", "--index", str(index)],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert run.returncode == 74, run.stderr
    assert run.stderr.startswith("error: ") and "vectors.npy is damaged" in run.stderr, run.stderr
    assert "Aborted!" not in run.stderr and "Traceback" not in run.stderr
