"""The ``asyncfaults`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: expected 0 to 65535")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="asyncfaults", description="Fault injection for async Python web apps."
    )
    parser.add_argument("--version", action="version", version=f"asyncfaults {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="a short tour of the fault proxy on loopback")
    demo.add_argument("--seed", type=int, default=1, help="engine seed (default: 1)")
    serve = commands.add_parser(
        "serve",
        help="a Toxiproxy-compatible server (its HTTP API) over the embedded engine",
        description="Serve Toxiproxy 2.12's HTTP API over the embedded fault engine.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="API address (default: 127.0.0.1)")
    serve.add_argument(
        "--port", type=_port, default=8474, help="API port, 0 for any (default: 8474)"
    )
    serve.add_argument(
        "--config", metavar="FILE", help="proxies to create at start (Toxiproxy's format)"
    )
    serve.add_argument("--seed", type=int, help="engine seed (default: random, printed at start)")
    serve.add_argument(
        "--allow-remote", action="store_true", help="allow a --host that is not a loopback address"
    )
    serve.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="exit when stdin reaches end of file"
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo(seed=args.seed)
    if args.command == "serve":
        from ._server import run_serve

        return run_serve(
            host=args.host,
            port=args.port,
            config=args.config,
            seed=args.seed,
            allow_remote=args.allow_remote,
            exit_on_stdin_eof=args.exit_on_stdin_eof,
        )
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
