"""The ``asyncfaults`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from .._version import __version__


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake said in one line (the usage is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: expected 0 to 65535")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="asyncfaults", description="Fault injection for async Python web apps.")
    parser.add_argument("--version", action="version", version=f"asyncfaults {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
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
    repro = commands.add_parser(
        "repro",
        help="replay an incident: the app in process, faults in front of its upstreams, "
        "one request, its background work waited for",
        description="Start APP (package.module:app) in process with fault proxies in front of "
        "its upstreams, apply a scenario or faults, send one request, wait for the background "
        "work, and print what became of it or where it hangs. Exit status: 0 the app coped, "
        "1 it hung or failed unnoticed, 2 bad usage.",
    )
    repro.add_argument("app", metavar="APP", help="the ASGI app, as package.module:attribute")
    _add_fault_arguments(repro)
    repro.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set in the environment before the app is imported; may name the proxies: "
        "DB_PORT={postgres.port}, DATABASE_URL=postgresql://u@{postgres.listen}/db",
    )
    repro.add_argument(
        "--request",
        default="GET /",
        metavar="'METHOD /path'",
        help="the request to send (default: 'GET /')",
    )
    repro.add_argument("--data", help="the request body, or @FILE to read it from a file")
    repro.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="FIELD=PATH",
        help="a file to upload as multipart form data (may be repeated)",
    )
    repro.add_argument(
        "--header", action="append", default=[], metavar="'Name: value'", help="a request header"
    )
    repro.add_argument(
        "--within",
        type=float,
        metavar="SECONDS",
        help="seconds to wait for the background work (default: the scenario's settle, else 10)",
    )
    repro.add_argument(
        "--startup-timeout",
        type=float,
        default=10.0,
        help="bound on the app's lifespan startup and shutdown, in seconds (default: 10)",
    )
    repro.add_argument(
        "--app-dir", help="directory to import the app from (default: the current directory)"
    )
    repro.add_argument(
        "--timeline",
        metavar="FILE",
        help="where the timeline (HTML) of a failure goes (default: the temp directory)",
    )
    report = commands.add_parser(
        "report",
        help="chaos reports: merge the JSON reports of a matrix's shards",
        description="Work with the JSON reports of --asyncfaults-report.",
    )
    report_commands = report.add_subparsers(dest="report_command", metavar="COMMAND")
    merge = report_commands.add_parser(
        "merge",
        help="one matrix from the JSON reports of its shards (CI jobs, xdist on several machines)",
        description="Merge the JSON reports of a chaos matrix cut in shards into the matrix one "
        "run would have made; print it, and write it as JSON (-o) and as a page (--html). Exit "
        "status: 0 every cell passed or was skipped, 1 one failed, 2 bad usage.",
    )
    merge.add_argument("reports", nargs="+", metavar="REPORT.json", help="the shards' reports")
    merge.add_argument("-o", "--output", metavar="FILE", help="write the merged JSON report here")
    merge.add_argument(
        "--html", metavar="FILE", help="write the matrix as a self-contained HTML page here"
    )
    proxy = commands.add_parser(
        "proxy",
        help="a standalone fault proxy for a server you run, with faults from the command line",
        description="Run fault proxies to the given upstreams, with faults given as --toxic or "
        "in a scenario file, until interrupted. Prints each proxy's address first.",
    )
    _add_fault_arguments(proxy, listen=True)
    proxy.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)"
    )
    proxy.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a listen address that is not a loopback address",
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo(seed=args.seed)
    if args.command == "serve":
        from .._backends._process import require_serve_stack
        from .._exceptions import ServiceError

        try:
            require_serve_stack("asyncfaults serve")
        except ServiceError as exc:
            print(f"asyncfaults serve: {exc}", file=sys.stderr)
            return 2
        from ._serve import run_serve

        return run_serve(
            host=args.host,
            port=args.port,
            config=args.config,
            seed=args.seed,
            allow_remote=args.allow_remote,
            exit_on_stdin_eof=args.exit_on_stdin_eof,
        )
    if args.command == "repro":
        from .._exceptions import InvalidError
        from ._repro import make_plan, run_repro

        try:
            plan = make_plan(
                app=args.app,
                proxies=args.proxy,
                env=args.env,
                scenario=args.scenario,
                toxics=args.toxic,
                request=args.request,
                data=args.data,
                files=args.file,
                headers=args.header,
                within=args.within,
                seed=args.seed,
                startup_timeout=args.startup_timeout,
                app_dir=args.app_dir,
                timeline=args.timeline,
            )
        except InvalidError as exc:
            print(f"asyncfaults repro: {exc}", file=sys.stderr)
            return 2
        return run_repro(plan)
    if args.command == "report":
        if args.report_command != "merge":
            report.print_help(sys.stderr)
            return 2
        from ._report import run_merge

        return run_merge(args.reports, args.output, args.html)
    if args.command == "proxy":
        from ._proxy import run_proxy

        return run_proxy(
            proxies=args.proxy,
            toxics=args.toxic,
            scenario=args.scenario,
            seed=args.seed,
            duration=args.duration,
            allow_remote=args.allow_remote,
        )
    parser.print_help(sys.stderr)
    return 2


def _add_fault_arguments(parser: argparse.ArgumentParser, *, listen: bool = False) -> None:
    where = "NAME=HOST:PORT[@LISTEN_HOST:PORT]" if listen else "NAME=HOST:PORT"
    parser.add_argument(
        "--proxy",
        action="append",
        default=[],
        metavar=where,
        help="a fault proxy named NAME in front of the upstream HOST:PORT (may be repeated); "
        "it listens on a free loopback port"
        + (" unless @LISTEN_HOST:PORT is given" if listen else ""),
    )
    parser.add_argument(
        "--scenario", metavar="FILE", help="a scenario file (TOML): its faults and expectations"
    )
    parser.add_argument(
        "--toxic",
        action="append",
        default=[],
        metavar="PROXY:TYPE[:KEY=VALUE,...]",
        help="a fault, e.g. postgres:timeout:timeout=0, smtp:reset_peer, "
        "postgres:latency:latency=200,jitter=50,stream=upstream,toxicity=0.3 (may be repeated)",
    )
    parser.add_argument("--seed", type=int, help="engine seed (default: random, printed)")


if __name__ == "__main__":
    raise SystemExit(main())
