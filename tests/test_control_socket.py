"""The control socket (agent/control.py) and `station-agent sim` (agent/sim.py) against
it: a server in this process over a MockStation, the CLI as a real subprocess."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest

from agent.clock import ManualClock
from agent import sim as sim_cli
from agent.control import MAX_LINE, ControlError, ControlServer, EvseStatus, build_status
from hal.api import ExternalLimitSignal
from hal.drivers.mock import MockEvseSpec, MockStation

ROOT = Path(__file__).parent.parent
EVSE_KEYS = {"state": str, "plugged": bool, "contactor_closed": bool,
             "offered_current_a": (float, type(None)), "power_limit_w": (float, type(None)),
             "power_w": float, "energy_wh": float, "transaction_id": (str, type(None)),
             "locked": (bool, type(None))}


@pytest.fixture
def short_dir(tmp_path: Path) -> Iterator[Path]:
    """A Unix socket path must stay under ~107 bytes; pytest's tmp_path may not."""
    if len(str(tmp_path)) < 70:
        yield tmp_path
        return
    directory = Path(tempfile.mkdtemp(prefix="sa-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def stub_status(station: MockStation) -> Callable[[], dict]:
    """What the daemon does, minus the daemon: the mock's snapshot plus agent state."""
    def status() -> dict:
        return build_status(True, {
            evse_id: EvseStatus(state="Occupied" if snap["plugged"] else "Available",
                                snapshot=snap, power_limit_w=None if evse_id == 1 else 7400.0,
                                transaction_id="tx-1" if snap["contactor_closed"] else None)
            for evse_id in station.evse_ids for snap in [station.snapshot(evse_id)]})
    return status


Scenario = Callable[[Path, MockStation, ManualClock], Awaitable[Any]]


def serve(directory: Path, scenario: Scenario,
          status: Callable[[MockStation], Callable[[], dict]] = stub_status,
          external_limit_ignored: Callable[[], str | None] = lambda: None) -> Any:
    async def main() -> Any:
        clock = ManualClock()
        station = MockStation([MockEvseSpec(1, 32, 3, 230), MockEvseSpec(2, 16, 1, 230)], clock)
        await station.start()
        path = directory / "control.sock"
        server = ControlServer(path, station, status(station), external_limit_ignored)
        await server.start()
        try:
            return await scenario(path, station, clock)
        finally:
            await server.stop()
            await station.stop()
    return asyncio.run(main())


async def ask(path: Path, *lines: bytes | dict) -> list[dict]:
    """Send these lines on one connection, read one reply per line."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=16 * MAX_LINE)
    try:
        replies = []
        for line in lines:
            data = line if isinstance(line, bytes) else json.dumps(line).encode() + b"\n"
            writer.write(data)
            await writer.drain()
            replies.append(json.loads(await asyncio.wait_for(reader.readline(), 5)))
        return replies
    finally:
        writer.close()
        await writer.wait_closed()


async def ask_one(path: Path, request: bytes | dict) -> dict:
    return (await ask(path, request))[0]


# -- the server ------------------------------------------------------------------------------

def test_each_command_drives_the_mock_station(short_dir: Path) -> None:
    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        assert await ask_one(path, {"command": "plug", "evse": 1}) == {"ok": True, "evse": 1}
        assert station.snapshot(1)["plugged"] is True
        await station.devices(1).pilot.offer(16)
        await ask_one(path, {"command": "ev-max", "evse": 1, "amps": 10.5})
        assert station.snapshot(1)["ev_max_a"] == 10.5
        await ask_one(path, {"command": "suspend", "evse": 1})
        assert station.snapshot(1)["pilot"] == "B"
        await ask_one(path, {"command": "resume", "evse": 1})
        assert station.snapshot(1)["pilot"] == "C"
        await ask_one(path, {"command": "fault", "evse": 2})
        assert station.snapshot(2)["fault"] and station.snapshot(2)["pilot"] == "F"
        await ask_one(path, {"command": "clear", "evse": 2})
        assert station.snapshot(2)["fault"] is None
        await ask_one(path, {"command": "unplug", "evse": 1})
        assert station.snapshot(1)["plugged"] is False

        tokens = station.devices(1).reader.tokens()
        reply = await ask_one(path, {"command": "swipe", "token": "04a2b3c4"})
        assert reply == {"ok": True, "evse": 1, "token": "04A2B3C4", "type": "ISO14443"}
        assert (await asyncio.wait_for(tokens.__anext__(), 1)).uid == "04A2B3C4"
        reply = await ask_one(path, {"command": "swipe", "token": "E004015012345678", "evse": 2,
                                     "type": "ISO15693"})
        assert reply["evse"] == 2
        assert (await asyncio.wait_for(station.devices(2).reader.tokens().__anext__(), 1)).type == "ISO15693"
    serve(short_dir, scenario)


def test_external_limit_sets_and_clears_the_station_wide_limit(short_dir: Path) -> None:
    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        limit = station.external_limit
        heard: list[ExternalLimitSignal] = []
        limit.subscribe(lambda: heard.append(limit.signal))
        reply = await ask_one(path, {"command": "external-limit", "watts": 4200, "source": "SO",
                                     "grid_critical": True})
        assert reply == {"ok": True}
        assert limit.signal == ExternalLimitSignal(4200.0, "SO", True)
        await ask_one(path, {"command": "external-limit", "watts": 3500.5})  # the defaults
        assert limit.signal == ExternalLimitSignal(3500.5, "EMS", False)
        assert await ask_one(path, {"command": "external-limit", "watts": None}) == {"ok": True}
        assert limit.signal == ExternalLimitSignal()
        reply = await ask_one(path, {"command": "external-limit", "watts": None})
        assert reply == {"ok": False, "error": "no external limit is set; nothing to clear"}
        assert heard == [ExternalLimitSignal(4200.0, "SO", True), ExternalLimitSignal(3500.5),
                         ExternalLimitSignal()]
        # Not an EVSE's business: the status document is the contract's, unchanged.
        status = (await ask_one(path, {"command": "status"}))["status"]
        assert set(status) == {"connected", "evses"}
    serve(short_dir, scenario)


@pytest.mark.parametrize("request_, error", [
    ({}, "missing 'watts'"),
    ({"watts": "4200"}, "'watts' must be a number or null, got string"),
    ({"watts": True}, "'watts' must be a number or null, got boolean"),
    ({"watts": [4200]}, "'watts' must be a number or null, got array"),
    ({"watts": -1}, "0 or more"),
    ({"watts": float("nan")}, "0 or more"),
    ({"watts": float("inf")}, "0 or more"),
    ({"watts": 4200, "source": "CSO"}, "limit source must be one of EMS, SO, Other"),
    ({"watts": 4200, "source": 1}, "'source' must be a string, got integer"),
    ({"watts": 4200, "grid_critical": "yes"}, "'grid_critical' must be true or false, got string"),
    ({"watts": 4200, "grid_critical": 1}, "'grid_critical' must be true or false, got integer"),
    ({"watts": 4200, "evse": 1}, "unknown field(s) 'evse'"),
    ({"limit": 4200}, "unknown field(s) 'limit'"),
])
def test_bad_external_limits_get_errors_and_change_nothing(
        short_dir: Path, request_: dict, error: str) -> None:
    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        station.set_external_limit(5000, "SO")
        heard: list[object] = []
        station.external_limit.subscribe(lambda: heard.append(station.external_limit.signal))
        reply = await ask_one(path, {"command": "external-limit", **request_})
        assert reply["ok"] is False and error in reply["error"], reply
        assert station.external_limit.signal == ExternalLimitSignal(5000, "SO") and heard == []
    serve(short_dir, scenario)


def test_status_has_exactly_the_contract_keys_and_types(short_dir: Path) -> None:
    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        station.plug(1)
        await station.devices(1).lock.lock()
        await station.devices(1).pilot.offer(16)
        await station.devices(1).contactor.close()
        await clock.advance(900)
        reply = await ask_one(path, {"command": "status"})
        assert reply["ok"] is True and set(reply) == {"ok", "status"}
        status = reply["status"]
        assert set(status) == {"connected", "evses"} and status["connected"] is True
        assert set(status["evses"]) == {"1", "2"}
        for evse in status["evses"].values():
            assert set(evse) == set(EVSE_KEYS)
            for key, types in EVSE_KEYS.items():
                assert isinstance(evse[key], types), key
        one, two = status["evses"]["1"], status["evses"]["2"]
        assert one == {"state": "Occupied", "plugged": True, "contactor_closed": True,
                       "offered_current_a": 16.0, "power_limit_w": None, "power_w": 11040.0,
                       "energy_wh": 2760.0, "transaction_id": "tx-1", "locked": True}
        assert two["state"] == "Available" and two["offered_current_a"] is None
        assert two["power_limit_w"] == 7400.0
    serve(short_dir, scenario)


def test_build_status_checks_the_state_and_normalises_types() -> None:
    snap = {"plugged": 1, "contactor_closed": 0, "offered_current_a": 16, "power_w": 0,
            "energy_wh": 1.23456789}
    status = build_status(False, {2: EvseStatus("Faulted", snap, 11000, "abc"),
                                  1: EvseStatus("Reserved", snap)})
    assert list(status["evses"]) == ["1", "2"] and status["connected"] is False
    two = status["evses"]["2"]
    assert two == {"state": "Faulted", "plugged": True, "contactor_closed": False,
                   "offered_current_a": 16.0, "power_limit_w": 11000.0, "power_w": 0.0,
                   "energy_wh": 1.235, "transaction_id": "abc", "locked": None}
    assert json.loads(json.dumps(status)) == status
    with pytest.raises(ValueError, match="Charging"):
        build_status(True, {1: EvseStatus("Charging", snap)})


@pytest.mark.parametrize("line, error", [
    (b"plug 1\n", "not JSON"),
    (b"\xff\xfe\n", "not UTF-8"),
    (b"[1, 2]\n", "JSON object"),
    (b"{}\n", "missing 'command'"),
    (b'{"command": 7}\n', "'command' must be a string"),
    (b'{"command": "explode"}\n', "unknown command 'explode'"),
    (b'{"command": "plug"}\n', "missing 'evse'"),
    (b'{"command": "plug", "evse": "1"}\n', "'evse' must be an integer"),
    (b'{"command": "plug", "evse": true}\n', "'evse' must be an integer"),
    (b'{"command": "plug", "evse": 1.0}\n', "'evse' must be an integer"),
    (b'{"command": "plug", "evse": 9}\n', "unknown EVSE 9"),
    (b'{"command": "plug", "evse_id": 1}\n', "unknown field(s) 'evse_id'"),
    (b'{"command": "ev-max", "evse": 1}\n', "missing 'amps'"),
    (b'{"command": "ev-max", "evse": 1, "amps": "16"}\n', "'amps' must be a number"),
    (b'{"command": "ev-max", "evse": 1, "amps": NaN}\n', "'amps' must be a number"),
    (b'{"command": "ev-max", "evse": 1, "amps": -3}\n', "'amps' must be 0 to 32"),
    (b'{"command": "swipe"}\n', "missing 'token'"),
    (b'{"command": "swipe", "token": 1234}\n', "'token' must be a string"),
    (b'{"command": "swipe", "token": ""}\n', "token must be"),
    (b'{"command": "swipe", "token": "", "type": "Local"}\n', "token must be"),
    (b'{"command": "swipe", "token": "AB", "type": "Magic"}\n', "idToken type"),
    (b'{"command": "suspend", "evse": 1}\n', "no EV plugged in"),
    (b"[" * 60000 + b"\n", "nested too deeply"),
])
def test_bad_requests_get_errors_and_the_server_keeps_serving(
        short_dir: Path, line: bytes, error: str) -> None:
    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        bad, good = await ask(path, line, {"command": "plug", "evse": 1})
        assert bad["ok"] is False and error in bad["error"], bad
        assert good == {"ok": True, "evse": 1}
    serve(short_dir, scenario)


@pytest.mark.parametrize("request_, error", [
    ({"command": "unplug", "evse": 1}, "EVSE 1: no EV plugged in; nothing to unplug"),
    ({"command": "clear", "evse": 1}, "EVSE 1: no fault to clear"),
    ({"command": "resume", "evse": 1}, "EVSE 1: no EV plugged in; nothing to resume"),
    ({"command": "plug", "evse": 2}, "EVSE 2: an EV is plugged in already; nothing to do"),
    ({"command": "fault", "evse": 2}, "EVSE 2: faulted already; 'clear' ends the fault"),
    ({"command": "suspend", "evse": 2}, "EVSE 2: the EV is suspended already; nothing to do"),
])
def test_a_command_with_nothing_to_do_says_so_and_changes_nothing(
        short_dir: Path, request_: dict, error: str) -> None:
    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        # EVSE 1 empty and healthy; EVSE 2 with a suspended EV, faulted.
        station.plug(2)
        station.suspend(2)
        station.fault(2)
        before = {e: station.snapshot(e) for e in (1, 2)}
        assert await ask_one(path, request_) == {"ok": False, "error": error}
        assert {e: station.snapshot(e) for e in (1, 2)} == before
    serve(short_dir, scenario)


def test_resume_needs_a_suspended_ev(short_dir: Path) -> None:
    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        station.plug(1)
        reply = await ask_one(path, {"command": "resume", "evse": 1})
        assert reply == {"ok": False, "error": "EVSE 1: the EV is not suspended; nothing to resume"}
        assert await ask_one(path, {"command": "suspend", "evse": 1}) == {"ok": True, "evse": 1}
        assert await ask_one(path, {"command": "resume", "evse": 1}) == {"ok": True, "evse": 1}
        assert station.snapshot(1)["suspended"] is False
    serve(short_dir, scenario)


@pytest.mark.parametrize("token, id_type, accepted", [
    ("04A2B3C4", "ISO14443", True),               # 4 bytes (single size)
    ("04a2b3c4d5e6f7", "ISO14443", True),         # 7 bytes (double size)
    ("04A2B3C4D5E6F708090A", "ISO14443", True),   # 10 bytes (triple size)
    ("nothex!!", "ISO14443", False),
    ("AB12", "ISO14443", False),                  # 2 bytes
    ("04A2B3C", "ISO14443", False),               # half a byte short
    ("04A2B3C4D5", "ISO14443", False),            # 5 bytes
    ("04A2B3C4 ", "ISO14443", False),
    ("０４A2B3C4", "ISO14443", False),             # full-width digits are not hex
    ("E004015012345678", "ISO15693", True),       # 8 bytes
    ("04A2B3C4", "ISO15693", False),
    ("CARD-0001", "Local", True),                 # no UID format: the reader's rules only
    ("x" * 37, "Local", False),                   # over IdTokenType's 36 characters
])
def test_swipe_takes_only_uids_a_card_of_that_type_can_have(
        short_dir: Path, token: str, id_type: str, accepted: bool) -> None:
    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        tokens = station.devices(1).reader.tokens()
        reply = await ask_one(path, {"command": "swipe", "token": token, "type": id_type})
        if accepted:
            assert reply == {"ok": True, "evse": 1, "token": token.upper(), "type": id_type}
            assert (await asyncio.wait_for(tokens.__anext__(), 1)).uid == token.upper()
            return
        assert reply["ok"] is False and reply["error"].startswith("token must be"), reply
        # Nothing reached the reader: the next card is the first one it yields.
        await ask_one(path, {"command": "swipe", "token": "0A0B0C0D"})
        assert (await asyncio.wait_for(tokens.__anext__(), 1)).uid == "0A0B0C0D"
    serve(short_dir, scenario)


@pytest.mark.parametrize("evse, amps, accepted", [
    (1, 32, True), (1, 0, True), (1, 6.5, True), (2, 16, True),
    (1, 32.5, False), (2, 17, False), (1, 1e9, False), (1, 1e308, False),
])
def test_ev_max_stays_within_what_the_connector_carries(
        short_dir: Path, evse: int, amps: float, accepted: bool) -> None:
    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        before = station.snapshot(evse)["ev_max_a"]
        reply = await ask_one(path, {"command": "ev-max", "evse": evse, "amps": amps})
        if accepted:
            assert reply == {"ok": True, "evse": evse}
            assert station.snapshot(evse)["ev_max_a"] == amps
        else:
            most = 32 if evse == 1 else 16
            assert reply == {"ok": False, "error": (
                f"EVSE {evse}: 'amps' must be 0 to {most} (its max_current_a: an EV draws no "
                f"more than the connector carries), got {amps:g}")}
            assert station.snapshot(evse)["ev_max_a"] == before
    serve(short_dir, scenario)


def test_an_external_limit_the_agent_ignores_is_set_and_the_reply_says_why(
        short_dir: Path) -> None:
    honoured = [False]

    def ignored() -> str | None:
        return None if honoured[0] else "SmartChargingCtrlr.ExternalControlSignalsEnabled is false"

    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        reply = await ask_one(path, {"command": "external-limit", "watts": 4200})
        assert reply == {"ok": True,
                         "ignored": "SmartChargingCtrlr.ExternalControlSignalsEnabled is false"}
        # The input is set all the same, as a real energy manager's would be.
        assert station.external_limit.signal == ExternalLimitSignal(4200.0)
        # Clearing is never ignored: no limit is what an ignoring agent applies anyway.
        assert await ask_one(path, {"command": "external-limit", "watts": None}) == {"ok": True}
        honoured[0] = True
        assert await ask_one(path, {"command": "external-limit", "watts": 4200}) == {"ok": True}
    serve(short_dir, scenario, external_limit_ignored=ignored)


def test_an_oversize_line_gets_an_error_and_its_connection_closes(short_dir: Path) -> None:
    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b'{"command": "status", "x": "' + b"A" * (MAX_LINE + 10) + b'"}\n')
        await writer.drain()
        reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
        assert reply["ok"] is False and "longer than" in reply["error"]
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed
        writer.close()
        assert (await ask_one(path, {"command": "status"}))["ok"] is True
    serve(short_dir, scenario)


def test_clients_that_hang_up_mid_way_do_no_harm(short_dir: Path) -> None:
    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        for junk in (b"", b'{"command": "pl', b'{"command": "status"}\n'):
            _, writer = await asyncio.open_unix_connection(str(path))
            writer.write(junk)
            writer.close()  # without reading any reply
            await writer.wait_closed()
        await asyncio.sleep(0.05)
        # Several requests on one connection, answered in order.
        replies = await ask(path, {"command": "plug", "evse": 2}, b"\n" + json.dumps(
            {"command": "status"}).encode() + b"\n")
        assert replies[0]["ok"] and replies[1]["status"]["evses"]["2"]["plugged"] is True
    serve(short_dir, scenario)


def test_a_failing_status_provider_is_an_error_reply(short_dir: Path) -> None:
    def broken(station: MockStation) -> Callable[[], dict]:
        def status() -> dict:
            raise RuntimeError("station state not ready")
        return status

    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        bad, good = await ask(path, {"command": "status"}, {"command": "plug", "evse": 1})
        assert bad == {"ok": False, "error": "internal error: RuntimeError: station state not ready"}
        assert good["ok"] is True
    serve(short_dir, scenario, status=broken)


def test_socket_file_mode_stale_file_and_cleanup(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: what a killed agent leaves behind
    stale.close()

    async def main() -> None:
        station = MockStation([MockEvseSpec(1, 32)], ManualClock())
        server = ControlServer(path, station, lambda: {})
        await server.start()
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        with pytest.raises(ControlError, match="another station-agent is running"):
            await ControlServer(path, station, lambda: {}).start()
        await server.stop()
        assert not path.exists()
        path.write_text("not a socket")
        with pytest.raises(ControlError, match="not a socket"):
            await ControlServer(path, station, lambda: {}).start()
    asyncio.run(main())


# -- `station-agent sim` ------------------------------------------------------------------------

def write_config(directory: Path, driver: str = "mock") -> Path:
    path = directory / "station-agent.toml"
    # A hardware EVSE names its devices; /dev/null stands in for the meter's port.
    devices = ('[evse.meter]\ndriver = "modbus_meter"\nport = "/dev/null"\n'
               '[evse.power]\ndriver = "can_power"\ninterface = "virtual"\nchannel = "x"\n'
               'modules = [1]\n') if driver == "hardware" else ""
    path.write_text(
        '[station]\nid = "CS-SIM"\nvendor = "Example"\nmodel = "AC-22"\n\n'
        '[csms]\nurl = "ws://127.0.0.1:9/ocpp"\nsecurity_profile = 1\npassword = "s3cret-password-0001"\n\n'
        f'[storage]\ndir = "."\n\n[hal]\ndriver = "{driver}"\n\n'
        f"[[evse]]\nid = 1\nmax_current_a = 32\n{devices}\n"
        f"[[evse]]\nid = 2\nmax_current_a = 16\nphases = 1\n{devices}")
    return path


async def sim(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "sim", *args, cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def test_sim_commands_against_a_running_server(short_dir: Path) -> None:
    config = str(write_config(short_dir))

    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        results = await asyncio.gather(
            sim("--config", config, "plug", "1"),
            sim("--config", config, "swipe", "04a2b3c4", "--evse", "2"),
            sim("ev-max", "1", "10", "--config", config))  # --config after the command too
        assert [r[1].strip() for r in results] == [
            "EVSE 1: plugged in", "EVSE 2: card 04A2B3C4 presented",
            "EVSE 1: the EV draws at most 10 A"]
        for code, out, err in results:
            assert (code, err) == (0, ""), err
        assert station.snapshot(1)["plugged"] and station.snapshot(1)["ev_max_a"] == 10
        assert (await station.devices(2).reader.tokens().__anext__()).uid == "04A2B3C4"

        code, out, err = await sim("--config", config, "status")
        assert (code, err) == (0, "")
        status = json.loads(out)
        assert set(status) == {"connected", "evses"}
        assert status["evses"]["1"]["plugged"] is True
        assert set(status["evses"]["1"]) == set(EVSE_KEYS)

        code, out, err = await sim("--config", config, "plug", "9")
        assert code == 1 and out == ""
        assert err.strip() == "station-agent sim: unknown EVSE 9"
        code, _, err = await sim("--config", config, "suspend", "2")
        assert code == 1 and "no EV plugged in" in err
    serve(short_dir, scenario)


def test_sim_says_what_happened_and_exits_0_only_when_done(short_dir: Path) -> None:
    """The issue's cases, as a person typing them sees them."""
    config = str(write_config(short_dir))

    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        before = station.snapshot(1)
        code, out, err = await sim("--config", config, "unplug", "1")
        assert (code, out) == (1, "")
        assert err.strip() == "station-agent sim: EVSE 1: no EV plugged in; nothing to unplug"
        code, out, err = await sim("--config", config, "clear", "1")
        assert (code, out, err.strip()) == (1, "", "station-agent sim: EVSE 1: no fault to clear")
        code, out, err = await sim("--config", config, "ev-max", "1", "1e9")
        assert (code, out) == (1, "")
        assert err.strip() == ("station-agent sim: EVSE 1: 'amps' must be 0 to 32 (its "
                               "max_current_a: an EV draws no more than the connector "
                               "carries), got 1e+09")
        code, out, err = await sim("--config", config, "swipe", "nothex!!")
        assert (code, out) == (2, "")
        assert ("TOKEN must be an ISO14443 card UID: 4, 7 or 10 bytes in hex (8, 14 or 20 hex "
                "digits, e.g. 04A2B3C4), got 'nothex!!'") in err
        code, out, err = await sim("--config", config, "external-limit", "clear")
        assert (code, out) == (1, "")
        assert err.strip() == "station-agent sim: no external limit is set; nothing to clear"
        assert station.snapshot(1) == before
        assert station.external_limit.signal == ExternalLimitSignal()
    serve(short_dir, scenario)


def test_sim_external_limit_the_agent_ignores_exits_1_and_says_how_to_enable(
        short_dir: Path) -> None:
    config = str(write_config(short_dir))

    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        code, out, err = await sim("--config", config, "external-limit", "4200", "--source", "SO")
        assert (code, out) == (1, "")
        assert err.strip() == (
            "station-agent sim: external limit input set to 4200 W from SO, but the agent "
            "ignores it: SmartChargingCtrlr.ExternalControlSignalsEnabled is false; the limit "
            "applies once the CSMS sets it to true (SetVariables)")
        assert station.external_limit.signal == ExternalLimitSignal(4200.0, "SO")
    serve(short_dir, scenario, external_limit_ignored=lambda: (
        "SmartChargingCtrlr.ExternalControlSignalsEnabled is false"))


def test_sim_external_limit_against_a_running_server(short_dir: Path) -> None:
    config = str(write_config(short_dir))

    async def scenario(path: Path, station: MockStation, clock: ManualClock) -> None:
        code, out, err = await sim("--config", config, "external-limit", "4200", "--source", "SO",
                                   "--grid-critical")
        assert (code, err) == (0, ""), err
        assert out.strip() == "external limit set: 4200 W from SO, grid critical"
        assert station.external_limit.signal == ExternalLimitSignal(4200.0, "SO", True)
        code, out, err = await sim("external-limit", "clear", "--config", config)
        assert (code, err, out.strip()) == (0, "", "external limit cleared")
        assert station.external_limit.signal == ExternalLimitSignal()
    serve(short_dir, scenario)


def parse_sim(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="station-agent sim")
    sim_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("argv, request_", [
    (("external-limit", "4200"),
     {"command": "external-limit", "watts": 4200, "source": "EMS", "grid_critical": False}),
    (("external-limit", "1500.5", "--source", "Other"),
     {"command": "external-limit", "watts": 1500.5, "source": "Other", "grid_critical": False}),
    (("external-limit", "--grid-critical", "0", "--source", "SO"),
     {"command": "external-limit", "watts": 0, "source": "SO", "grid_critical": True}),
    (("external-limit", "clear"),
     {"command": "external-limit", "watts": None, "source": "EMS", "grid_critical": False}),
    (("external-limit", "CLEAR"),
     {"command": "external-limit", "watts": None, "source": "EMS", "grid_critical": False}),
])
def test_sim_external_limit_arguments(argv: tuple[str, ...], request_: dict) -> None:
    request = sim_cli.build_request(parse_sim(*argv))
    assert request == request_
    assert type(request["watts"]) is type(request_["watts"])  # 4200 on the wire, not 4200.0


@pytest.mark.parametrize("argv, error", [
    (("external-limit", "lots"),
     "WATTS must be a number of watts, 0 or more, or 'clear', got 'lots'"),
    (("external-limit", "-5"), "got '-5'"),
    (("external-limit", "nan"), "got 'nan'"),
    (("external-limit", "inf"), "got 'inf'"),
    (("external-limit",), "the following arguments are required: WATTS"),
    (("external-limit", "4200", "--source", "CSO"), "invalid choice: 'CSO'"),
])
def test_sim_external_limit_bad_arguments(
        capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], error: str) -> None:
    with pytest.raises(SystemExit) as info:
        parse_sim(*argv)
    assert info.value.code == 2 and error in capsys.readouterr().err


def test_sim_errors_without_a_running_agent(short_dir: Path) -> None:
    config = write_config(short_dir)

    async def main() -> None:
        code, out, err = await sim("--config", str(config), "status")
        assert code == 1 and out == ""
        assert err.strip() == ("station-agent sim: station-agent is not running "
                               f"(no control socket at {short_dir / 'control.sock'})")
        code, _, err = await sim("--config", str(write_config(short_dir, "hardware")), "status")
        assert code == 2 and 'sim needs hal.driver = "mock"' in err
        code, _, err = await sim("--config", str(short_dir / "missing.toml"), "status")
        assert code == 2 and "config error" in err and "missing.toml" in err
        code, _, err = await sim("--config", str(config), "plug", "one")
        assert code == 2 and "EVSE must be an EVSE id" in err
        code, _, err = await sim("--config", str(config), "honk")
        assert code == 2 and "invalid choice" in err
        code, out, err = await sim("--config", str(config), "external-limit", "4.2kW")
        assert code == 2 and out == "" and "WATTS must be a number of watts" in err
        for amps in ("nan", "-1", "inf"):
            code, out, err = await sim("--config", str(config), "ev-max", "1", amps)
            assert code == 2 and out == "" and "AMPS must be a number of amps" in err
    asyncio.run(main())
