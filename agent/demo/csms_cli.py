"""By hand: a CSMS that prints the exchange, for poking at a station from a shell.

Outside the agent.demo.csms package on purpose: `station-agent` builds its parser with
these arguments on every run, and the package imports the `ocpp` library (test extra).

`station-agent csms` (or `python -m agent.demo.csms`) serves OCPP 2.0.1 on loopback for
`station-agent run --config config/dev.toml` and for a station under development: it
accepts the BootNotification, answers every CALL with the peer's defaults and prints
each frame. It is the test suite's CSMS peer (the PyPI `ocpp` package, the test extra),
not a back end for real stations.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on "
                        "(default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="port (default 9000)")
    parser.add_argument("--password", action="append", metavar="STATION=PASSWORD",
                        type=_station_password,
                        help="require this HTTP Basic auth password of this station id "
                             "(repeatable); without it any station is admitted")
    parser.add_argument("--heartbeat-interval", type=int, default=300, metavar="SECONDS",
                        help="the interval the BootNotification answer gives (default 300)")


def _station_password(text: str) -> tuple[str, str]:
    station, sep, password = text.partition("=")
    if not sep or not station or not password:
        raise argparse.ArgumentTypeError(f"expected STATION=PASSWORD, got {text!r}")
    return station, password


def run(args: argparse.Namespace) -> int:
    try:
        from agent.demo.csms.server import Csms
    except ImportError as exc:
        print(f"station-agent csms needs the test extra ({exc.name} is missing): "
              "pip install 'station-agent[test]', or run `make csms`", file=sys.stderr)
        return 1
    passwords = dict(args.password) if args.password else None

    def show(station_id: str, direction: str, text: str) -> None:
        arrow = "->" if direction == "in" else "<-"
        print(f"{time.strftime('%H:%M:%S')} {station_id} {arrow} {text}", flush=True)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with Csms(args.host, args.port, passwords=passwords, on_frame=show,
                        heartbeat_interval=args.heartbeat_interval) as csms:
            print(f"CSMS listening on {csms.url}/<station id>; Ctrl-C stops it", flush=True)
            await stop.wait()

    try:
        asyncio.run(serve())
    except OSError as exc:   # the port is taken, the address is not this machine's
        print(f"station-agent csms: cannot listen on {args.host}:{args.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m agent.demo.csms`: the same as `station-agent csms`."""
    parser = argparse.ArgumentParser(prog="python -m agent.demo.csms", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))
