"""By hand: a CSMS that prints the exchange, for poking at a station from a shell."""

from __future__ import annotations

import argparse
import asyncio
import time

from agent.demo.csms.server import Csms


async def _serve_forever(args: argparse.Namespace) -> None:
    passwords = dict(p.split("=", 1) for p in args.password) if args.password else None

    def show(station_id: str, direction: str, text: str) -> None:
        arrow = "->" if direction == "in" else "<-"
        print(f"{time.strftime('%H:%M:%S')} {station_id} {arrow} {text}", flush=True)

    async with Csms(args.host, args.port, passwords=passwords, on_frame=show,
                    heartbeat_interval=args.heartbeat_interval) as csms:
        print(f"CSMS listening on {csms.url}/<station id>", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """`python -m agent.demo.csms`: a CSMS that prints the exchange, for poking at a station."""
    parser = argparse.ArgumentParser(prog="python -m agent.demo.csms", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--password", action="append", metavar="STATION=PASSWORD",
                        help="require HTTP Basic auth (repeatable)")
    parser.add_argument("--heartbeat-interval", type=int, default=300)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve_forever(args))
    except KeyboardInterrupt:
        pass
