"""The control socket: how `station-agent sim` drives the mock hardware of a running agent.

A Unix-domain socket at `<storage.dir>/control.sock`, mode 0660 (the agent's user and
group: file permissions are the access control, there is no other). The protocol is
newline-delimited JSON, one request and one reply per line, any number per connection:

    {"command": "plug", "evse": 1}                  -> {"ok": true, "evse": 1}
    {"command": "swipe", "token": "04a2b3c4"}       -> {"ok": true, "evse": 1, "token": "04A2B3C4", "type": "ISO14443"}
    {"command": "ev-max", "evse": 1, "amps": 16}    -> {"ok": true, "evse": 1}
    {"command": "external-limit", "watts": 4200, "source": "SO", "grid_critical": true}
                                                    -> {"ok": true}, or {"ok": true,
                                                       "ignored": "<why the agent ignores it>"}
    {"command": "status"}                           -> {"ok": true, "status": {...}}
    anything wrong                                  -> {"ok": false, "error": "unknown EVSE 9"}

Commands: plug, unplug, suspend, resume, fault, clear, lock-fail, lock-ok (each needs
"evse"; lock-fail jams the socket's lock so that it neither locks nor unlocks, lock-ok
frees it; an EVSE with a fixed cable has no lock and refuses both), ev-max
("evse", "amps"), swipe ("token"; "evse" optional, default the lowest EVSE id, where a
station's single reader sits; "type" optional, default ISO14443), external-limit ("watts",
a number or null for no limit; "source" optional, EMS, SO or Other, default EMS;
"grid_critical" optional, default false), status. Unknown fields are errors, so a typo
is not silently ignored. Nothing a client sends can stop the server: bad input gets an
error reply, a line over 64 KiB gets one and the connection is closed (the rest of that
line cannot be told from the next request).

"ok": true means the command did what it names; one with nothing to do is an error that
says so (unplug with no EV plugged in, clear without a fault, plug twice, ...), so a
script learns that its picture of the station was wrong. Meaningless values are refused:
an ISO14443 token is a card UID of 4, 7 or 10 bytes in hex (ISO15693: 8), and ev-max is
0 to the EVSE's max_current_a (an EV draws no more than its connector carries). An
external limit the agent ignores (SmartChargingCtrlr.ExternalControlSignalsEnabled false)
is still set, as a real energy manager's input would be, and the reply says why it has
no effect; it applies as soon as the agent honours external limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from hal.drivers.mock import MockStation

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
SOCKET_MODE = 0o660
MAX_LINE = 64 * 1024
STATES = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")

StatusProvider = Callable[[], dict]
# Why the agent ignores the external limit input now; None when it applies it.
ExternalLimitPolicy = Callable[[], "str | None"]

# IdTokenEnumType (OCPP 2.0.1 Part 2; its schema allows 36 characters): ISO14443 is the
# UID of an ISO/IEC 14443 card in hex, OCPP naming 4 and 7 bytes, ISO/IEC 14443-3 also
# 10 (triple size); ISO15693 is an 8-byte UID. Other types carry what their issuer chose.
UID_BYTES = {"ISO14443": (4, 7, 10), "ISO15693": (8,)}
_HEX = frozenset("0123456789abcdefABCDEF")


def socket_path(storage_dir: Path) -> Path:
    return Path(storage_dir) / SOCKET_NAME


# -- the status document (docs/architecture.md, "The interface") ---------------------------

@dataclass(frozen=True)
class EvseStatus:
    """What the daemon knows of one EVSE, beside the mock's own snapshot."""

    state: str                       # the connector status: one of STATES
    snapshot: Mapping[str, Any]      # MockStation.snapshot(evse_id)
    power_limit_w: float | None = None
    transaction_id: str | None = None


def build_status(connected: bool, evses: Mapping[int, EvseStatus]) -> dict[str, Any]:
    """The `sim status` JSON, in one place: exactly the contract's keys and types."""
    out: dict[str, Any] = {}
    for evse_id in sorted(evses):
        e = evses[evse_id]
        if e.state not in STATES:
            raise ValueError(f"EVSE {evse_id}: state {e.state!r} is not one of {', '.join(STATES)}")
        snap = e.snapshot
        out[str(evse_id)] = {
            "state": e.state,
            "plugged": bool(snap["plugged"]),
            "contactor_closed": bool(snap["contactor_closed"]),
            "offered_current_a": _number_or_none(snap["offered_current_a"]),
            "power_limit_w": _number_or_none(e.power_limit_w),
            "power_w": _number(snap["power_w"]),
            "energy_wh": _number(snap["energy_wh"]),
            "transaction_id": None if e.transaction_id is None else str(e.transaction_id),
            # The socket's lock (null: a fixed cable, no lock).
            "locked": None if snap.get("locked") is None else bool(snap["locked"]),
        }
    return {"connected": bool(connected), "evses": out}


def _number(value: float) -> float:
    # Millis are plenty for a person or a check, and spare them 11040.000000000002.
    return round(float(value), 3)


def _number_or_none(value: float | None) -> float | None:
    return None if value is None else _number(value)


# -- requests -------------------------------------------------------------------------------

class RequestError(Exception):
    """A request that cannot be carried out; the text goes back to the client."""


def _evse(request: Mapping[str, Any], *, required: bool = True) -> int | None:
    if "evse" not in request and not required:
        return None
    if "evse" not in request:
        raise RequestError(f"{request['command']}: missing 'evse' (an EVSE id)")
    value = request["evse"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"'evse' must be an integer EVSE id, got {_json_type(value)}")
    return value


def _amps(request: Mapping[str, Any]) -> float:
    if "amps" not in request:
        raise RequestError("ev-max: missing 'amps'")
    value = request["amps"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"'amps' must be a number, got {_json_type(value)}")
    return float(value)


def _watts(request: Mapping[str, Any]) -> float | None:
    # Required, null included: a request that forgot the limit must not lift it.
    if "watts" not in request:
        raise RequestError("external-limit: missing 'watts' (a number, or null for no limit)")
    value = request["watts"]
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise RequestError(f"'watts' must be a number or null, got {_json_type(value)}")
    return value


def _flag(request: Mapping[str, Any], key: str) -> bool:
    value = request.get(key, False)
    if not isinstance(value, bool):
        raise RequestError(f"{key!r} must be true or false, got {_json_type(value)}")
    return value


def _string(request: Mapping[str, Any], key: str, default: str | None = None) -> str:
    if key not in request:
        if default is None:
            raise RequestError(f"{request['command']}: missing {key!r}")
        return default
    value = request[key]
    if not isinstance(value, str):
        raise RequestError(f"{key!r} must be a string, got {_json_type(value)}")
    return value


def check_uid(uid: str, id_type: str) -> None:
    """ValueError unless `uid` is a UID an `id_type` card can have (types without a UID
    format pass: the reader checks what every token must be)."""
    sizes = UID_BYTES.get(id_type)
    if sizes is None:
        return
    if not uid or len(uid) % 2 or not set(uid) <= _HEX or len(uid) // 2 not in sizes:
        counts = " or ".join(", ".join(str(n) for n in sizes).rsplit(", ", 1))
        digits = " or ".join(", ".join(str(2 * n) for n in sizes).rsplit(", ", 1))
        raise ValueError(f"token must be an {id_type} card UID: {counts} bytes in hex "
                         f"({digits} hex digits, e.g. {'04A2B3C4D5E6F708'[:2 * sizes[0]]}), "
                         f"got {uid[:40]!r}")


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
             dict: "object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# command -> the fields it takes (beyond "command")
_FIELDS: dict[str, frozenset[str]] = {
    **{c: frozenset({"evse"}) for c in ("plug", "unplug", "suspend", "resume", "fault", "clear",
                                        "lock-fail", "lock-ok")},
    "ev-max": frozenset({"evse", "amps"}),
    "swipe": frozenset({"token", "evse", "type"}),
    "external-limit": frozenset({"watts", "source", "grid_critical"}),
    "status": frozenset(),
}
COMMANDS = tuple(_FIELDS)


class Dispatcher:
    """Request (a decoded JSON value) -> reply; no I/O, so it is tested on its own."""

    def __init__(self, station: MockStation, status: StatusProvider,
                 external_limit_ignored: ExternalLimitPolicy = lambda: None) -> None:
        self._station = station
        self._status = status
        self._external_limit_ignored = external_limit_ignored

    def handle(self, request: Any) -> dict[str, Any]:
        try:
            return {"ok": True, **self._handle(request)}
        except RequestError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a bug here must not end the agent
            log.exception("control request %r failed", request)
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}

    def _handle(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise RequestError(f"a request is a JSON object, got {_json_type(request)}")
        command = request.get("command")
        if not isinstance(command, str):
            raise RequestError("missing 'command' (a string)" if command is None
                               else f"'command' must be a string, got {_json_type(command)}")
        if command not in _FIELDS:
            raise RequestError(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
        extra = sorted(set(request) - _FIELDS[command] - {"command"})
        if extra:
            raise RequestError(f"{command}: unknown field(s) {', '.join(map(repr, extra))}")
        if command == "status":
            return {"status": self._status()}
        try:
            return self._act(command, request)
        except ValueError as exc:  # the station's refusal (UnknownEvse is one): the client's error
            raise RequestError(str(exc)) from None

    def _act(self, command: str, request: Mapping[str, Any]) -> dict[str, Any]:
        st = self._station
        if command == "swipe":
            uid, id_type = _string(request, "token"), _string(request, "type", "ISO14443")
            chosen = _evse(request, required=False)
            evse_id = st.default_evse() if chosen is None else chosen
            st.snapshot(evse_id)  # an unknown EVSE first: the token is not the problem then
            check_uid(uid, id_type)
            token = st.swipe(uid, id_type, evse_id)
            return {"evse": evse_id, "token": token.uid, "type": token.type}
        if command == "external-limit":
            return self._external_limit(request)
        evse_id = _evse(request)
        assert evse_id is not None
        nothing_to_do = _nothing_to_do(command, evse_id, st.snapshot(evse_id))
        if nothing_to_do:
            raise RequestError(nothing_to_do)
        if command == "ev-max":
            amps, most = _amps(request), st.ev(evse_id).spec.max_current_a
            if not 0 <= amps <= most:
                raise RequestError(f"EVSE {evse_id}: 'amps' must be 0 to {most:g} (its "
                                   "max_current_a: an EV draws no more than the connector "
                                   f"carries), got {amps:g}")
            st.set_ev_max(evse_id, amps)
        else:
            actions: dict[str, Callable[[int], None]] = {
                "plug": st.plug, "unplug": st.unplug, "suspend": st.suspend,
                "resume": st.resume, "fault": st.fault, "clear": st.clear,
                "lock-fail": st.lock_fail, "lock-ok": st.lock_ok}
            actions[command](evse_id)
        return {"evse": evse_id}

    def _external_limit(self, request: Mapping[str, Any]) -> dict[str, Any]:
        st = self._station
        watts = _watts(request)
        source, critical = _string(request, "source", "EMS"), _flag(request, "grid_critical")
        if watts is None and st.external_limit.signal.limit_w is None:
            raise RequestError("no external limit is set; nothing to clear")
        # The range and the source are the station's to check (its ValueError becomes
        # the reply), so the socket and a test calling MockStation agree.
        st.set_external_limit(watts, source, critical)
        ignored = self._external_limit_ignored() if watts is not None else None
        return {"ignored": ignored} if ignored else {}


def _nothing_to_do(command: str, evse_id: int, snap: Mapping[str, Any]) -> str | None:
    """Why `command` would change nothing on this EVSE now, or None."""
    plugged, fault = snap["plugged"], snap["fault"]
    if command == "plug" and plugged:
        return f"EVSE {evse_id}: an EV is plugged in already; nothing to do"
    if command in ("unplug", "suspend", "resume") and not plugged:
        return f"EVSE {evse_id}: no EV plugged in; nothing to {command}"
    if command == "suspend" and snap["suspended"]:
        return f"EVSE {evse_id}: the EV is suspended already; nothing to do"
    if command == "resume" and not snap["suspended"]:
        return f"EVSE {evse_id}: the EV is not suspended; nothing to resume"
    if command == "fault" and fault:
        return f"EVSE {evse_id}: faulted already; 'clear' ends the fault"
    if command == "clear" and not fault:
        return f"EVSE {evse_id}: no fault to clear"
    if command in ("lock-fail", "lock-ok") and snap.get("locked") is None:
        return f"EVSE {evse_id} has a fixed cable: there is no lock"
    if command == "lock-fail" and snap.get("lock_jammed"):
        return f"EVSE {evse_id}: the lock is failing already; 'lock-ok' ends it"
    if command == "lock-ok" and not snap.get("lock_jammed"):
        return f"EVSE {evse_id}: the lock works; nothing to do"
    return None


def decode(line: bytes) -> Any:
    """One request line -> a JSON value; RequestError if it is not one."""
    try:
        return json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RequestError(f"not JSON: {exc}") from None
    except RecursionError:
        raise RequestError("not JSON this agent accepts: nested too deeply") from None


def encode(reply: Mapping[str, Any]) -> bytes:
    return json.dumps(reply, separators=(",", ":"), allow_nan=False).encode() + b"\n"


# -- the server -------------------------------------------------------------------------------

class ControlError(Exception):
    """The control socket cannot be set up; the text says what to do."""


class ControlServer:
    def __init__(self, path: Path | str, station: MockStation, status: StatusProvider,
                 external_limit_ignored: ExternalLimitPolicy = lambda: None) -> None:
        self.path = Path(path)
        self._dispatcher = Dispatcher(station, status, external_limit_ignored)
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        _remove_stale(self.path)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_LINE)
        except OSError as exc:
            raise ControlError(f"cannot create the control socket {self.path}: "
                               f"{exc.strerror or exc}") from None
        os.chmod(self.path, SOCKET_MODE)
        self._inode = os.stat(self.path).st_ino
        log.info("control socket at %s", self.path)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        # Python 3.12+ waits in wait_closed() for every connection: end them first.
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        # Remove the socket only if it is still ours (a new agent may have replaced it).
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up mid-way: nothing to answer
        except asyncio.CancelledError:
            pass  # the server is stopping
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # over the limit, its end not yet seen
                writer.write(encode({"ok": False, "error": f"request longer than {MAX_LINE} bytes"}))
                await writer.drain()
                return
            if not line:
                return
            if not line.strip():
                continue
            writer.write(self._answer(line))
            await writer.drain()

    def _answer(self, line: bytes) -> bytes:
        try:
            return encode(self._dispatcher.handle(decode(line)))
        except RequestError as exc:
            return encode({"ok": False, "error": str(exc)})
        except (TypeError, ValueError) as exc:  # a status provider gave something not JSON
            log.exception("control reply could not be encoded")
            return encode({"ok": False, "error": f"internal error: {exc}"})


def _remove_stale(path: Path) -> None:
    """A socket file left by an agent that died; refuse if an agent still answers on it."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlError(f"{path} exists and is not a socket; remove it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        os.unlink(path)  # nobody listens: stale
        return
    finally:
        probe.close()
    raise ControlError(f"another station-agent is running with the control socket {path}; "
                       "stop it first or give this one another storage.dir")
