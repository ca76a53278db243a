"""The `p4r` command group and the one place where errors become messages and exit codes.

Every command runs inside `P4RGroup.invoke`: a library error (`P4RError`) becomes `error: …` and its exit
code; a bad option value (`click.BadParameter`) exits 64 and other command-line mistakes 2; Ctrl-C says what
the interrupted command leaves behind and exits 130. With `--json`, the error is one JSON object on stderr:
`{"error": {"message": …, "exit_code": …, "type": …}}`.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import NoReturn

import click

from .. import __version__
from ..encoder import Encoder
from ..errors import P4RError
from ..redaction import redact

EXIT_BAD_OPTION_VALUE = 64  # EX_USAGE, as ChoiceError and ConfigError
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C
JSON_FLAG = "p4r.json"  # in ctx.meta, which a command's context shares with its group's
CLIENT_LOGGERS = ("elastic_transport", "elasticsearch", "opensearch", "urllib3")

EXIT_CODES_HELP = """\b
Exit codes: 0 success; 1 error; 2 bad command line; 64 bad option value;
65 bad input data; 66 not found; 74 index needs repair;
75 incomplete (failed items or documents, or a cost cap): rerun to finish;
130 interrupted (Ctrl-C)."""

_RERUN = "rerun the same command to"
_CONVERTED = f"the output folder is unchanged (it is replaced only when a conversion completes); {_RERUN} convert again"
INTERRUPTED = {  # what each long command leaves behind when interrupted, hence what to do next
    "personas generate": f"every finished item is saved in the output; {_RERUN} resume (done items are skipped)",
    "index build": ("an embedded index keeps its last complete build until this one commits, a cluster index the "
                    f"documents already written; {_RERUN} finish (items are written by id)"),
    "index attach": f"the documents already updated keep their personas; {_RERUN} finish (updates are by id)",
    "eval loo": f"the personas and vectors computed so far are cached in the work folder; {_RERUN} resume",
    "eval retrieval": f"the personas and vectors computed so far are cached in the output folder; {_RERUN} resume",
    **{f"data {name}": _CONVERTED for name in ("convert-amazon", "convert-goodreads", "convert-clothing")},
}


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if verbose:
        logging.getLogger().setLevel(logging.INFO)  # basicConfig does nothing once logging is configured
    for name in CLIENT_LOGGERS:  # the clients log every retry with a traceback; p4r reports the outcome itself
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)


def _verbose_after_command(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        configure_logging(True)


def _notice(message: str) -> None:
    click.echo(message, err=True)


class P4RCommand(click.Command):
    """A `p4r` command: takes -v/--verbose after its name too, tells P4RGroup whether --json was asked for,
    and, unless it was, says on stderr when the encoder starts loading."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.params.append(click.Option(["-v", "--verbose"], is_flag=True, expose_value=False,
                                        callback=_verbose_after_command, help="Log what happens, to stderr."))

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if any(isinstance(p, click.Option) and "--json" in p.opts for p in self.params):
            options = args[: args.index("--")] if "--" in args else args
            ctx.meta[JSON_FLAG] = "--json" in options  # so that a command-line error is JSON too
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        ctx.meta[JSON_FLAG] = as_json = bool(ctx.params.get("as_json"))
        Encoder.load_notice = None if as_json else _notice
        try:
            return super().invoke(ctx)
        finally:
            Encoder.load_notice = None


def command_key(ctx: click.Context) -> str:
    """The invoked command's path below `p4r`, from its group's context: "personas generate"."""
    names = [ctx.invoked_subcommand or ""]
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names)).strip()


def fail(ctx: click.Context, message: str, exit_code: int, kind: str, prefix: str = "error: ") -> NoReturn:
    """Print the message on stderr (one JSON object when the command got --json) and exit. Secrets, and
    anything shaped like one that a server echoed into an error, never reach the terminal."""
    message = redact(message)
    if ctx.meta.get(JSON_FLAG):
        error = {"message": message, "exit_code": exit_code, "type": kind}
        click.echo(json.dumps({"error": error}, ensure_ascii=False), err=True)
    else:
        click.echo(prefix + message, err=True)
    sys.exit(exit_code)


class P4RGroup(click.Group):
    """Turns typed errors, command-line mistakes and Ctrl-C into messages with meaningful exit codes."""

    command_class = P4RCommand
    group_class = type  # subgroups are P4RGroups, so their commands are P4RCommands

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except P4RError as exc:
            fail(ctx, str(exc), exc.exit_code, type(exc).__name__)
        except KeyboardInterrupt:
            note = INTERRUPTED.get(command_key(ctx))
            message = f"interrupted: {note}" if note else "interrupted"
            fail(ctx, message, EXIT_INTERRUPTED, "KeyboardInterrupt", prefix="\n")  # "\n" ends the ^C line
        except click.UsageError as exc:
            if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
                exc.exit_code = EXIT_BAD_OPTION_VALUE  # a bad value; 2 stays for unknown or missing options
            if ctx.meta.get(JSON_FLAG):
                fail(ctx, exc.format_message(), exc.exit_code, type(exc).__name__)
            raise


@click.group(cls=P4RGroup, epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="p4r")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens, to stderr (also accepted after the command).")
def cli(verbose: bool) -> None:
    """Persona-based recommendation for search indexes (Persona4Rec).

    Offline, reviews become personas; online, a user's profile vector is matched
    against persona vectors, and the best persona explains each recommendation.
    """
    configure_logging(verbose)
