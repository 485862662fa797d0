"""`station-agent sim`: drive the mock hardware of a running agent through its control
socket (agent/control.py). One request per invocation; the reply decides the exit code.

Exit codes: 0 done, and only when the command did what it names; 1 the agent is not
running, refused the command (unknown EVSE, an EV draw above the EVSE's rating, ...) or
had nothing to do (unplug with no EV plugged in, clear without a fault, plug twice,
external-limit clear with no limit set), or, for external-limit, the input was set but
the agent ignores it (SmartChargingCtrlr.ExternalControlSignalsEnabled is false: the
limit applies once the CSMS sets it true); 2 bad arguments (argparse: a token that is
not an ISO14443 UID, amps that are not a number, ...) or a config that does not load or
is not a mock station.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import sys
from pathlib import Path
from typing import Any

from agent.config import DEFAULT_CONFIG_PATH, ConfigError, load_config
from agent.control import MAX_LINE, check_uid, socket_path
from hal.api import LIMIT_SOURCES

EXIT_REFUSED = 1
TOKEN_TYPE = "ISO14443"   # what `swipe` presents (the interface: an RFID card)
EXIT_CONFIG = 2
TIMEOUT_S = 5.0

# command -> (help, what it confirms on stdout)
_EVSE_COMMANDS = {
    "plug": ("EV cable connected", "plugged in"),
    "unplug": ("EV cable removed", "unplugged"),
    "suspend": ("the EV stops drawing energy (SuspendedEV)", "EV suspended"),
    "resume": ("the EV draws energy again", "EV resumed"),
    "fault": ("a hardware fault on that EVSE", "fault raised"),
    "clear": ("end the hardware fault", "fault cleared"),
    "lock-fail": ("the socket's connector lock jams: it neither locks nor unlocks",
                  "the connector lock jams"),
    "lock-ok": ("the connector lock works again", "the connector lock works again"),
}


class SimError(Exception):
    """One line for stderr; `code` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


def _evse_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"EVSE must be an EVSE id (1, 2, ...), got {text!r}")
    return value


def _amps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"AMPS must be a number of amps, 0 or more, got {text!r}")
    return value


def _uid(text: str) -> str:
    """TOKEN of `swipe`: the UID of an ISO14443 card, as the reader would read it."""
    try:
        check_uid(text, TOKEN_TYPE)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("token", "TOKEN", 1)) from None
    return text


CLEAR_LIMIT = "clear"


def _watts(text: str) -> float | None:
    """WATTS of `external-limit`: a number, or 'clear' (None: no limit)."""
    if text.strip().lower() == CLEAR_LIMIT:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"WATTS must be a number of watts, 0 or more, or '{CLEAR_LIMIT}', got {text!r}")
    return value


def _json_number(value: float) -> int | float:
    # 4200, not 4200.0, on the wire and on the screen (1e300 stays a float, not 301 digits).
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `sim` subcommand's arguments, commands in the order of docs/architecture.md.
    `--config` may come before or after COMMAND."""
    config_help = f"configuration file of the running agent (default {DEFAULT_CONFIG_PATH})"
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH, metavar="FILE",
                        help=config_help)
    sub = parser.add_subparsers(dest="sim_command", metavar="COMMAND", required=True)

    def command(name: str, text: str, *, evse: bool = True) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=text, description=text)
        if evse:
            cmd.add_argument("evse", metavar="EVSE", type=_evse_id, help="EVSE id")
        # SUPPRESS: a subcommand's own default would overwrite a --config given before it.
        cmd.add_argument("--config", type=Path, default=argparse.SUPPRESS, metavar="FILE",
                         help=config_help)
        return cmd

    for name in ("plug", "unplug"):
        command(name, _EVSE_COMMANDS[name][0])
    swipe = command("swipe", "present an RFID card (idToken type ISO14443)", evse=False)
    swipe.add_argument("token", metavar="TOKEN", type=_uid,
                       help="the card's UID in hex: 4, 7 or 10 bytes, e.g. 04A2B3C4")
    swipe.add_argument("--evse", type=_evse_id, default=None, metavar="EVSE",
                       help="EVSE whose reader sees the card (default: the lowest EVSE id)")
    ev_max = command("ev-max", "most current the simulated EV draws (default: its max)")
    ev_max.add_argument("amps", metavar="AMPS", type=_amps,
                        help="amps per phase, 0 to the EVSE's max_current_a")
    for name in ("suspend", "resume", "fault", "clear", "lock-fail", "lock-ok"):
        command(name, _EVSE_COMMANDS[name][0])
    limit = command("external-limit", "a limit on the whole station from an energy manager or "
                    f"the grid operator (W); '{CLEAR_LIMIT}' ends it", evse=False)
    limit.add_argument("watts", metavar="WATTS", type=_watts,
                       help=f"the most power the whole station may draw, in W, or '{CLEAR_LIMIT}'")
    limit.add_argument("--source", choices=LIMIT_SOURCES, default="EMS",
                       help="who sets it: EMS (a local energy manager), SO (the grid operator) "
                            "or Other (default EMS)")
    limit.add_argument("--grid-critical", action="store_true",
                       help="the limit protects the grid (OCPP isGridCritical)")
    command("status", "the station as JSON on stdout", evse=False)


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    command = args.sim_command
    if command == "status":
        return {"command": "status"}
    if command == "swipe":
        request: dict[str, Any] = {"command": "swipe", "token": args.token}
        if args.evse is not None:
            request["evse"] = args.evse
        return request
    if command == "ev-max":
        return {"command": "ev-max", "evse": args.evse, "amps": _json_number(args.amps)}
    if command == "external-limit":
        return {"command": "external-limit",
                "watts": None if args.watts is None else _json_number(args.watts),
                "source": args.source, "grid_critical": args.grid_critical}
    return {"command": command, "evse": args.evse}


def send(path: Path, request: dict[str, Any], timeout: float = TIMEOUT_S) -> dict[str, Any]:
    """One request, one reply over the control socket; SimError for anything but a reply."""
    not_running = SimError(f"station-agent is not running (no control socket at {path})")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise not_running from None
        except PermissionError:
            raise SimError(f"cannot use the control socket {path}: permission denied; run as the "
                           "agent's user or a member of its group") from None
        except OSError as exc:
            raise SimError(f"cannot connect to the control socket {path}: {exc.strerror or exc}") from None
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            line = _read_line(sock)
        except socket.timeout:
            raise SimError(f"station-agent did not answer within {timeout:g} s") from None
        except OSError as exc:
            raise SimError(f"the control socket failed: {exc.strerror or exc}") from None
    finally:
        sock.close()
    if not line:
        raise SimError("station-agent closed the control socket without an answer")
    try:
        reply = json.loads(line)
    except ValueError:
        raise SimError("station-agent sent an answer that is not JSON") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise SimError("station-agent sent an answer this sim does not understand")
    return reply


def _read_line(sock: socket.socket) -> bytes:
    data = bytearray()
    while b"\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > 16 * MAX_LINE:  # a status of many EVSEs still fits easily
            raise SimError("station-agent sent an answer too long to be one")
    return bytes(data.split(b"\n", 1)[0])


def run(args: argparse.Namespace) -> int:
    try:
        reply = _run(args)
    except SimError as exc:
        print(f"station-agent sim: {exc}", file=sys.stderr)
        return exc.code
    if args.sim_command == "status":
        print(json.dumps(reply["status"]))
        return 0
    if reply.get("ignored"):
        # Set, as the energy manager's box would set it, yet without effect: not "done".
        critical = ", grid critical" if args.grid_critical else ""
        print(f"station-agent sim: external limit input set to {_json_number(args.watts)} W "
              f"from {args.source}{critical}, but the agent ignores it: {reply['ignored']}; "
              "the limit applies once the CSMS sets it to true (SetVariables)",
              file=sys.stderr)
        return EXIT_REFUSED
    print(_confirmation(args, reply))
    return 0


def _run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise SimError(f"config error: {exc}", EXIT_CONFIG) from None
    if config.hal.driver != "mock":
        raise SimError(f'sim needs hal.driver = "mock"; {config.path} has '
                       f'hal.driver = "{config.hal.driver}"', EXIT_CONFIG)
    reply = send(socket_path(config.storage.dir), build_request(args))
    if not reply["ok"]:
        raise SimError(str(reply.get("error") or "refused, no reason given"))
    if args.sim_command == "status" and not isinstance(reply.get("status"), dict):
        raise SimError("station-agent sent no status")
    return reply


def _confirmation(args: argparse.Namespace, reply: dict[str, Any]) -> str:
    command, evse = args.sim_command, reply.get("evse")
    if command == "external-limit":
        if args.watts is None:
            return "external limit cleared"
        critical = ", grid critical" if args.grid_critical else ""
        return f"external limit set: {_json_number(args.watts)} W from {args.source}{critical}"
    if command == "swipe":
        return f"EVSE {evse}: card {reply.get('token')} presented"
    if command == "ev-max":
        return f"EVSE {evse}: the EV draws at most {_json_number(args.amps)} A"
    return f"EVSE {evse}: {_EVSE_COMMANDS[command][1]}"
