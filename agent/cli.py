"""The `station-agent` command (docs/architecture.md, "The interface")."""

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
EXIT_FAILED = 1

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="station-agent",
                                description="OCPP 2.0.1 station agent for Linux EV chargers")
    p.add_argument("--version", action="version", version=f"station-agent {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (("run", "run the daemon in the foreground"),
                       ("check-config", "check the configuration file, and what run needs of "
                                        "this machine (storage.dir, certificate files, "
                                        "firmware commands), then exit")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH,
                         help=f"configuration file (default {DEFAULT_CONFIG_PATH})")
    sub.add_parser("demo", help="a local CSMS and a mock station, with the OCPP exchange shown")
    from agent.demo.csms_cli import add_arguments as csms_arguments
    csms_arguments(sub.add_parser(
        "csms", help="a CSMS on loopback that prints the exchange, for `run --config "
                     "config/dev.toml` (needs the test extra)"))
    sim.add_arguments(sub.add_parser("sim", help="drive the mock hardware of a running agent"))
    return p


def _load(path: Path) -> tuple[Config, list[str]] | None:
    """The config and its warnings; None once the error is printed. check-config and
    run both come through here (load_config, then check_startable), so what one
    refuses the other refuses with the same line."""
    from agent.preflight import check_startable
    try:
        config = load_config(path)
        return config, check_startable(config)
    except ConfigError as exc:
        print(f"station-agent: config error: {exc}", file=sys.stderr)
        return None


def _run(config: Config, warnings: list[str]) -> int:
    from agent.instance_lock import AlreadyRunning, InstanceLock
    # First of all, before the database and any hardware: one agent per station.
    try:
        instance = InstanceLock.acquire(config.storage.dir)
    except AlreadyRunning as exc:
        print(f"station-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"station-agent: storage.dir {config.storage.dir}: cannot take its lock: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return _run_locked(config, warnings)
    finally:
        instance.release()


def _run_locked(config: Config, warnings: list[str]) -> int:
    from agent.control import ControlError
    from agent.daemon import run_daemon  # keeps --version and check-config light
    from agent.logfile import console_handler
    from agent.store import StoreError

    # What the unit's UMask=0077 gives the packaged service, by hand too: the state holds
    # the Basic auth password, tokens and keys. (The store and the log make their files
    # 0600 themselves as well; this covers whatever else the agent or its install command
    # writes. The control socket is made 0660 on purpose.)
    os.umask(0o077)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(console_handler(sys.stderr, os.environ))
    for line in warnings:
        log.warning("%s", line)

    async def main() -> str:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stopping, sig, stop)
        return await run_daemon(config, stop)

    try:
        outcome = asyncio.run(main())
    except ConfigError as exc:
        print(f"station-agent: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        print(f"station-agent: {exc}; check storage.dir and its permissions", file=sys.stderr)
        return EXIT_FAILED
    except ControlError as exc:  # another agent on the same storage.dir, most likely
        print(f"station-agent: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if outcome == "reexec":
        _reexec()
    log.info("station-agent stopped")
    return 0


def _stopping(sig: int, stop: asyncio.Event) -> None:
    """A stop signal: said in the log (a stop nobody asked for must be traceable to who
    sent what), then the daemon's clean stop."""
    name = signal.Signals(sig).name
    if stop.is_set():
        log.info("%s received: the agent is already stopping", name)
    else:
        log.info("%s received: stopping the agent", name)
    stop.set()


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
        loaded = _load(args.config)
        if loaded is None:
            return EXIT_CONFIG
        config, warnings = loaded
        if args.command == "check-config":
            for line in warnings:
                print(f"station-agent: warning: {line}", file=sys.stderr)
            print(f"{args.config}: OK")
            return 0
        return _run(config, warnings)
    if args.command == "sim":
        return sim.run(args)
    if args.command == "demo":
        from agent.demo.run import main as demo_main
        return demo_main()
    if args.command == "csms":
        from agent.demo.csms_cli import run as run_csms
        return run_csms(args)
    _parser().print_help()
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
