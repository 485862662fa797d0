"""The `station-agent` command (DESIGN.md, "The interface")."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from agent import __version__, sim
from agent.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="station-agent",
                                description="OCPP 2.0.1 station agent for Linux EV chargers")
    p.add_argument("--version", action="version", version=f"station-agent {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (("run", "run the daemon in the foreground"),
                       ("check-config", "validate the configuration file and exit")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH,
                         help=f"configuration file (default {DEFAULT_CONFIG_PATH})")
    sub.add_parser("demo", help="a local CSMS and a mock station, with the OCPP exchange shown")
    sim.add_arguments(sub.add_parser("sim", help="drive the mock hardware of a running agent"))
    return p


def _load(path: Path) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"station-agent: config error: {exc}", file=sys.stderr)
        return None


def _run(config: Config) -> int:
    from agent.daemon import run_daemon  # keeps --version and check-config light
    from agent.store import StoreError

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")

    async def main() -> str:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await run_daemon(config, stop)

    try:
        outcome = asyncio.run(main())
    except ConfigError as exc:
        print(f"station-agent: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        print(f"station-agent: {exc}; check storage.dir and its permissions", file=sys.stderr)
        return 1
    if outcome == "reexec":
        _reexec()
    return 0


def _reexec() -> None:
    """Become a fresh agent process with the same command line: after a firmware install
    the new code on disk must be what runs. The PID stays (systemd keeps tracking it);
    the store and hardware were closed by run_daemon, and Python's own descriptors are
    not inherited."""
    logging.getLogger(__name__).info("restarting the agent process")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("run", "check-config"):
        config = _load(args.config)
        if config is None:
            return EXIT_CONFIG
        if args.command == "check-config":
            print(f"{args.config}: OK")
            return 0
        return _run(config)
    if args.command == "sim":
        return sim.run(args)
    if args.command == "demo":
        from agent.demo.run import main as demo_main
        return demo_main()
    _parser().print_help()
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
