"""Options shared by several commands, and small helpers to load inputs."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from ..io import LineReader, Rejects


class _Finite:
    """Refuses inf and nan, which click's float types take (FloatRange(min=0) too: nan compares false)."""

    def convert(self, value, param, ctx):
        number = click.types.FloatParamType.convert(self, value, param, ctx)  # before a range check: -inf < 0
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


class FiniteFloat(_Finite, click.types.FloatParamType):
    pass


class FiniteFloatRange(_Finite, click.FloatRange):
    pass


FINITE_FLOAT = FiniteFloat()

model_option = click.option(
    "--embedding-model",
    "--model",
    "model",
    default=None,
    metavar="NAME_OR_PATH",
    help="sentence-transformers model path or name [env P4R_MODEL; default: the packaged all-MiniLM-L6-v2].",
)
embedding_model_option = click.option(
    "--embedding-model",
    default=None,
    metavar="NAME_OR_PATH",
    help="sentence-transformers model path or name [env P4R_MODEL; default: the packaged all-MiniLM-L6-v2].",
)
skip_invalid_option = click.option(
    "--skip-invalid", is_flag=True, help="Reject bad lines into a rejects file and go on, instead of stopping."
)
rejects_option = click.option(
    "--rejects",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where rejected lines go [default: next to the output, *.rejects.jsonl].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
progress_option = click.option("--progress/--no-progress", default=True, help="Show a progress bar on stderr.")
input_file = click.Path(exists=True, dir_okay=False, path_type=Path)


def make_reader(skip_invalid: bool, rejects: Path | None, default_rejects: Path) -> LineReader:
    return LineReader(skip_invalid=skip_invalid, rejects=Rejects(rejects or default_rejects if skip_invalid else None))


def report_rejects(reader: LineReader) -> None:
    reader.rejects.close()
    if reader.rejects.count:
        click.echo(f"warning: {reader.rejects.count} invalid line(s) skipped; see {reader.rejects.path}", err=True)


def progress_bar(enabled: bool, desc: str):
    def wrap(iterable):
        if not enabled:
            return iterable
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, unit="item", file=sys.stderr, dynamic_ncols=True)

    return wrap



def counting_bar(enabled: bool, total: int, desc: str):
    """A tqdm bar on stderr, updated by hand (per bulk chunk); disabled when not wanted."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="item", file=sys.stderr, disable=not enabled)
