"""The `p4r` command line. Importing this registers every command on the `cli` group."""

from . import data, eval_retrieval, evaluate, index, personas, personas_batch, pipeline, recommend, serve, train  # noqa: F401  (registers the commands)
from .app import cli

main = cli

__all__ = ["cli", "main"]
