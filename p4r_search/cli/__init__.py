"""The `p4r` command line. Importing this registers every command on the `cli` group."""

from . import (  # noqa: F401  (registers the commands)
    data,
    eval_retrieval,
    evaluate,
    events,
    features,
    index,
    personas,
    personas_batch,
    pipeline,
    recommend,
    serve,
    train,
)
from .app import cli

main = cli

__all__ = ["cli", "main"]
