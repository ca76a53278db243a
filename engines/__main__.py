"""python -m engines fetch | up [NAME ...] | down | status: real engines on loopback (engines/__init__.py)."""

from __future__ import annotations

import argparse
import sys

from . import SPECS, EngineError, exports, fetch, load_state, reap_orphans, save_state, start_all, stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engines", description=__doc__)
    parser.add_argument("action", choices=["fetch", "up", "down", "status"])
    parser.add_argument("names", nargs="*", help=f"engines to start (default: all of {', '.join(s.name for s in SPECS)})")
    args = parser.parse_args(argv)
    try:
        if args.action == "fetch":
            print(f"fetched into {fetch()}")
        elif args.action == "up":
            if load_state():
                print("engines are already up (python -m engines down first):", file=sys.stderr)
                _print_exports()
                return 1
            unknown = set(args.names) - {s.name for s in SPECS}
            if unknown:
                parser.error(f"unknown engine(s) {sorted(unknown)}; choose from {[s.name for s in SPECS]}")
            nodes = start_all([s for s in SPECS if not args.names or s.name in args.names])
            try:
                save_state(nodes)
            except BaseException:
                for node in nodes:
                    stop(node)
                raise
            for node in nodes:
                print(f"# {node.name} {node.version} at {node.url} (pid {node.pid})", file=sys.stderr)
            _print_exports()
        elif args.action == "down":
            for node in reap_orphans():
                print(f"stopped {node.name} {node.version} left by a test run (pid {node.pid})", file=sys.stderr)
            for node in load_state():
                stop(node)
                print(f"stopped {node.name} {node.version} (pid {node.pid})", file=sys.stderr)
            save_state([])
        else:
            _print_exports()
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 69
    return 0


def _print_exports() -> None:
    for name, value in exports(load_state()).items():
        print(f"export {name}={value}")


if __name__ == "__main__":
    sys.exit(main())
