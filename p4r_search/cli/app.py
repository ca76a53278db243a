"""The `p4r` command group and the one place where library errors become messages and exit codes."""

from __future__ import annotations

import logging
import sys

import click

from .. import __version__
from ..errors import P4RError

EXIT_CODES_HELP = """\b
Exit codes: 0 success; 1 error; 2 bad command line; 64 bad option value;
65 bad input data; 66 not found; 74 index needs repair;
75 incomplete (failed items or documents, or a cost cap): rerun to finish."""


class P4RGroup(click.Group):
    """Turns the package's typed errors into one-line messages with meaningful exit codes."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except P4RError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=P4RGroup, epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="p4r")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens, to stderr.")
def cli(verbose: bool) -> None:
    """Persona-based recommendation for search indexes (Persona4Rec).

    Offline, reviews become personas; online, a user's profile vector is matched
    against persona vectors, and the best persona explains each recommendation.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not verbose:  # the clients log every retry with a traceback; p4r reports the outcome itself
        for name in ("elastic_transport", "elasticsearch", "opensearch", "urllib3"):
            logging.getLogger(name).setLevel(logging.ERROR)
