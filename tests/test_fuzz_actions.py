"""A hostile CSMS: every action the station accepts, with generated schema-valid payloads.

What must hold (issue 14): no handler raises on a schema-valid payload, whatever its
values; the daemon never dies of input; no value it accepts breaks it later.

How: the agent runs in this process on a ManualClock (`tests/harness.py:InProcessAgent`)
against the test CSMS on 127.0.0.1 and gets every frame over the real WebSocket. The
actions it accepts are found by asking it: a CALL of each CSMS action of OCPP 2.0.1 with
an unknown property gets NotSupported where its router has no handler, and a validation
error where it has one (the router is asked before the payload is checked). So a handler
is fuzzed the day it is registered, and no list here goes stale.

Payloads come from the official OCPP 2.0.1 request schemas of the `ocpp` package
(tests/schema_payloads.py): extreme integers, date-times at the edges of RFC 3339 and
leap seconds, strings empty and at their maximum length, unicode, arrays at their bounds,
every enum value; each is checked against its schema with jsonschema before it is sent.
Most are nudged towards what gets past the first checks (ids of EVSEs the station has,
variables of its own device model from its GetBaseReport, profiles that pass K01's rules,
firmware signed by a root it trusts) while keeping their extreme values; URLs all point
at a closed port on loopback.

The oracle for every answer: a CALLRESULT valid against the official response schema, or
a CALLERROR with a Part 4 code other than InternalError, and for a schema-valid payload
only a refusal the station makes on purpose (an integer beyond OCPP's 32 bits, a message
above its own size limits); never no answer, nothing logged at ERROR, the daemon still
running. Schema-invalid payloads and frames (wrong types, missing fields, unknown
properties and actions, broken JSON, oversize) get the code Part 4, 4.3 names. After the
fuzz the station reports what it accepted, charges with it while its clock runs for
hours, and restarts from the same storage dir. Below the fuzz, plain tests pin each bug
it found with the exact payload and the exact answer.

Deterministic in CI: hypothesis runs derandomized, with no example database (nothing is
written into the repository). By hand:

    FUZZ_EXAMPLES=500 FUZZ_SEED=7 .venv/bin/python -m pytest tests/test_fuzz_actions.py -q

FUZZ_EXAMPLES: examples per action (default 20); FUZZ_SEED=n: another repeatable series
(a fresh search); FUZZ_ONLY=SetVariables,GetLog: only those actions; FUZZ_TRACE=1 with
`-s`: every exchange printed, and what each action's answers were.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from agent.clock import ManualClock
from agent.demo.csms import Csms
from agent.demo.csms.oracle import ERROR_CODES
from agent.ocpp.session import MAX_FRAME_BYTES
from tests import schema_payloads as sp
from tests.harness import InProcessAgent, write_config

STATION = "CS-FUZZ"
START = datetime(2026, 3, 29, 0, 30, tzinfo=timezone.utc)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
SEED = int(os.environ.get("FUZZ_SEED", "0"))
TRACE = os.environ.get("FUZZ_TRACE") == "1"   # print every exchange (with -s)
ONLY = os.environ.get("FUZZ_ONLY", "").split(",") if os.environ.get("FUZZ_ONLY") else []
ANSWER_TIMEOUT = 10.0   # real seconds; an answer is due as soon as a handler is done

VALIDATION_CODES = frozenset({"FormatViolation", "TypeConstraintViolation",
                              "OccurrenceConstraintViolation", "PropertyConstraintViolation"})


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, derandomize=SEED == 0, database=None,
                    deadline=None, print_blob=False,
                    phases=(Phase.explicit, Phase.generate, Phase.shrink),
                    suppress_health_check=list(HealthCheck))


# --- what a schema-valid payload may still be refused for ---------------------------------

def scalars(action: str, payload: Any) -> Iterator[tuple[dict[str, Any], Any]]:
    """(schema node, value) of every scalar in a request payload."""
    doc = sp.schema(action, "Request")

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref")
        return doc["definitions"][ref.split("/")[-1]] if ref else node

    def walk(node: dict[str, Any], value: Any) -> Iterator[tuple[dict[str, Any], Any]]:
        node = resolve(node)
        if isinstance(value, dict):
            props = node.get("properties", {})
            for key, item in value.items():
                if key in props:
                    yield from walk(props[key], item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(node.get("items", {}), item)
        else:
            yield node, value
    yield from walk(doc, payload)


def refusable(action: str, payload: dict[str, Any]) -> set[str]:
    """CALLERROR codes the station may answer a schema-valid payload with, on purpose:
    TypeConstraintViolation for an integer outside 32 bits (Part 2's integer is 32-bit
    signed) and for a number beyond a double (RFC 8259, 6); see agent/ocpp/validation.py."""
    codes: set[str] = set()
    for node, value in scalars(action, payload):
        kind = node.get("type")
        if kind == "integer" and not sp.INT32_MIN <= value <= sp.INT32_MAX:
            codes.add("TypeConstraintViolation")
        if kind == "number" and isinstance(value, int) and value.bit_length() > 1024:
            codes.add("TypeConstraintViolation")
    return codes


# --- the rig: agent, CSMS and one event loop shared by every example ----------------------

@dataclass
class Limits:
    """DeviceDataCtrlr limits the station reports: above them it refuses a message."""
    bytes_per_message: dict[str, int] = field(default_factory=dict)
    items_per_message: dict[str, int] = field(default_factory=dict)


class Problems(logging.Handler):
    """Every record at ERROR or above: a handler that failed, an invalid message built,
    a follow-up that raised, a task that died."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        self.seen.append(text)


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._loop_error)
        self.problems = Problems()
        self.clock = ManualClock(START)
        self.ids = itertools.count(1)
        self.csms: Csms | None = None
        self.agent: InProcessAgent | None = None
        self.link: Any = None
        self.limits = Limits()
        # (action, outcome) -> count: what the fuzz reached (printed; see with -s).
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.device_model: list[dict[str, Any]] = []
        self.firmware_pki: Any = None
        # A port on loopback that refuses connections: where every URL the fuzz sends
        # points (firmware, log upload, network profiles), so nothing leaves the machine.
        self._closed = socket.socket()
        self._closed.bind(("127.0.0.1", 0))
        self.closed_port = self._closed.getsockname()[1]

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.problems.seen.append(f"event loop: {context.get('message')} "
                                  f"{context.get('exception')!r}")

    def run(self, coro: Any, timeout: float = 120) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    # lifecycle

    async def start(self) -> None:
        self.csms = Csms(now=self.clock.now)   # no password check: SetVariables may change it
        await self.csms.start()
        self.config_path = write_config(self.tmp_path, self.csms.url, station_id=STATION,
                                        evses=2)
        self.agent = InProcessAgent(self.config_path, self.clock)
        await self.agent.__aenter__()
        self.link = await self._connected(None)

    async def restart_agent(self, already_stopped: bool = False) -> None:
        """Stop the daemon and start it again from the same storage dir."""
        assert self.agent is not None
        if not already_stopped:
            await self.agent.__aexit__(None, None, None)
        assert self.agent.outcomes[-1] == "stop", self.agent.outcomes
        old = self.link
        self.agent = InProcessAgent(self.config_path, self.clock)
        await self.agent.__aenter__()
        self.link = await self._connected(old)

    async def stop(self) -> None:
        try:
            if self.agent is not None and self.agent.task is not None \
                    and not self.agent.task.done():
                await self.agent.__aexit__(None, None, None)
        finally:
            if self.csms is not None:
                await self.csms.stop()
            self._closed.close()

    async def _connected(self, after: Any) -> Any:
        """The station's next link once its BootNotification was answered; the clock is
        moved through reconnect back-off when the station waits on it."""
        assert self.csms is not None
        for _ in range(60):
            self.assert_alive()
            try:
                link = await self.csms.wait_station(STATION, timeout=0.5, after=after)
            except asyncio.TimeoutError:
                await self.clock.advance(15)
                continue
            await link.expect_call("BootNotification", timeout=10)
            return link
        raise AssertionError("the station did not reconnect within 15 min of its clock")

    async def restarted(self) -> None:
        """After an Accepted Reset of the station: its link closes and it comes back."""
        await asyncio.wait_for(self.link.closed.wait(), 10)
        self.link = await self._connected(self.link)

    def assert_alive(self) -> None:
        assert self.agent is not None and self.agent.task is not None
        if self.agent.task.done():
            error = self.agent.task.exception()
            raise AssertionError(f"the daemon stopped: {error!r}; outcomes "
                                 f"{self.agent.outcomes}")

    # talking

    async def raw(self, text: str, timeout: float = ANSWER_TIMEOUT) -> list[Any] | None:
        """Send one frame; the station's answer, parsed, or None when none came."""
        if self.link.closed.is_set():
            self.link = await self._connected(self.link)
        reply = await self.link.send_raw(text, timeout=timeout)
        return None if reply is None else json.loads(reply)

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any] | None:
        text = json.dumps([2, f"fz{next(self.ids)}", action, payload], ensure_ascii=False)
        return await self.raw(text)

    async def ok(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = await self.call(action, payload)
        assert answer is not None and answer[0] == 3, (action, payload, answer)
        return answer[2]

    def transaction_events(self, event_type: str) -> list[str]:
        """The transactionId of every TransactionEvent of this type, on every link."""
        assert self.csms is not None
        return [p["transactionInfo"]["transactionId"]
                for link in self.csms.links.get(STATION, [])
                for p in link.calls("TransactionEvent") if p["eventType"] == event_type]

    async def all_operative(self) -> None:
        """The station, each EVSE and each connector Operative again."""
        for evse in (None, {"id": 1}, {"id": 2}, {"id": 1, "connectorId": 1},
                     {"id": 2, "connectorId": 1}):
            request: dict[str, Any] = {"operationalStatus": "Operative"}
            if evse is not None:
                request["evse"] = evse
            answer = await self.ok("ChangeAvailability", request)
            assert answer["status"] in ("Accepted", "Scheduled"), answer

    async def trust_firmware_signer(self) -> None:
        """A manufacturer root of our own, so UpdateFirmware can get past its check."""
        from tests.firmware_pki import make_firmware_pki
        self.firmware_pki = make_firmware_pki("ec", now=START)
        answer = await self.ok("InstallCertificate", {
            "certificateType": "ManufacturerRootCertificate",
            "certificate": self.firmware_pki.root_pem})
        assert answer["status"] == "Accepted", answer

    async def learn_device_model(self) -> None:
        """The station's own device model, from its GetBaseReport FullInventory."""
        request_id = 4242
        answer = await self.ok("GetBaseReport", {"requestId": request_id,
                                                 "reportBase": "FullInventory"})
        assert answer["status"] == "Accepted"
        while True:
            page = await self.link.expect_call(
                "NotifyReport", timeout=10, where=lambda p: p["requestId"] == request_id)
            self.device_model.extend(page.get("reportData", []))
            if not page.get("tbc"):
                break
        for item in self.device_model:
            if item["component"]["name"] != "DeviceDataCtrlr":
                continue
            name = item["variable"]["name"]
            instance = item["variable"].get("instance")
            value = next((a.get("value") for a in item["variableAttribute"]
                          if a.get("type", "Actual") == "Actual"), None)
            if value is None or instance is None:
                continue
            if name == "BytesPerMessage":
                self.limits.bytes_per_message[instance] = int(value)
            elif name == "ItemsPerMessage":
                self.limits.items_per_message[instance] = int(value)

    # the oracle

    def check_answer(self, action: str, payload: dict[str, Any], text_size: int,
                     answer: list[Any] | None) -> None:
        self.assert_alive()
        assert answer is not None, f"{action}: no answer to a schema-valid CALL"
        assert not self.problems.seen, f"{action}: {self.problems.seen}"
        self.outcomes[action, outcome(answer)] += 1
        if answer[0] == 3:
            problems = sp.errors(action, "Response", answer[2])
            assert not problems, f"{action} answer {answer[2]!r} breaks its schema: {problems}"
            return
        assert answer[0] == 4, answer
        code, description = answer[2], answer[3]
        assert code in ERROR_CODES and code != "InternalError", (action, code, description)
        if code in VALIDATION_CODES:
            allowed = refusable(action, payload)
            limit = self.limits.bytes_per_message.get(action)
            if text_size > MAX_FRAME_BYTES or (limit is not None and text_size > limit):
                allowed.add("FormatViolation")
            most = self.limits.items_per_message.get(action)
            if most is not None and any(isinstance(v, list) and len(v) > most
                                        for v in payload.values()):
                allowed.add("OccurrenceConstraintViolation")
            assert code in allowed, (
                f"{action}: a schema-valid payload refused with {code} ({description})")


def outcome(answer: list[Any]) -> str:
    if answer[0] == 4:
        return answer[2]
    payload = answer[2]
    status = payload.get("status")
    if status is None:   # Get/SetVariables: one status per item
        items = next((v for v in payload.values() if isinstance(v, list)), [])
        status = "+".join(sorted({i.get("attributeStatus", "?") for i in items}))
    reason = (payload.get("statusInfo") or {}).get("reasonCode")
    return f"{status}/{reason}" if reason else str(status)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    root = logging.getLogger()
    root.addHandler(rig.problems)
    try:
        rig.run(rig.start(), timeout=60)
        yield rig
    finally:
        root.removeHandler(rig.problems)
        try:
            rig.run(rig.stop(), timeout=30)
        finally:
            rig.loop.close()


# --- payload strategies ------------------------------------------------------------------

URL_FIELDS = ("location", "remoteLocation", "ocppCsmsUrl")


def urls(port: int) -> Callable[[], st.SearchStrategy[str]]:
    """URLs that reach nothing but a closed port on loopback, or that no transfer can use
    (no scheme at all): the fuzz must not send the station anywhere."""
    def make() -> st.SearchStrategy[str]:
        paths = st.text(st.characters(codec="utf-8", exclude_characters="#?"), max_size=30)

        def local(schemes: list[str]) -> st.SearchStrategy[str]:
            return st.builds(lambda s, p: f"{s}://127.0.0.1:{port}/{p}",
                             st.sampled_from(schemes), paths)
        no_scheme = sp.strings(512).map(lambda s: s.replace(":", ""))
        return weighted((3, local(["http", "ftp", "HTTP"])),
                        (1, local(["https", "ws", "wss", "sftp"])),
                        (1, no_scheme)).filter(lambda u: len(u) <= 512)
    return make


def value_texts(characteristics: dict[str, Any]) -> st.SearchStrategy[str]:
    """attributeValue texts for one variable: its own kind of value at the edges, and
    garbage."""
    kind = characteristics.get("dataType", "string")
    options = [o for o in (characteristics.get("valuesList") or "").split(",") if o]
    garbage = sp.strings(1000)
    edges = [str(v) for v in sp.INT_EDGES] + ["9223372036854775808", "1" * 400, "+7", "007",
                                              " 5", "5 ", "0x10", "1e3", "-0"]
    if kind == "integer":
        return st.one_of(st.sampled_from(edges), st.integers(-5, 100_000).map(str), garbage)
    if kind == "decimal":
        return st.one_of(st.sampled_from(edges + ["1e308", "1e309", "-1e400", "NaN",
                                                  "Infinity", "0.000001", "1.5", ".5"]),
                         sp.numbers().map(repr), garbage)
    if kind == "boolean":
        return st.one_of(st.sampled_from(["true", "false", "TRUE", "False", "1", "0",
                                          "yes", ""]), garbage)
    if kind == "dateTime":
        return st.one_of(sp.date_times(lambda: START), garbage)
    if kind in ("OptionList", "MemberList", "SequenceList") and options:
        members = st.lists(st.sampled_from(options), max_size=len(options) + 1)
        return weighted((2, st.sampled_from(options)), (2, members.map(",".join)),
                        (1, st.sampled_from(options).map(str.upper)), (1, garbage))
    return garbage


def device_model_items(rig: Rig) -> st.SearchStrategy[dict[str, Any]]:
    """A variable of the station's device model (its reportData), writable ones mostly:
    read-only ones must be refused as such."""
    writable = [item for item in rig.device_model
                if any(a.get("mutability", "ReadWrite") != "ReadOnly"
                       for a in item["variableAttribute"])]
    return weighted((3, st.sampled_from(writable or rig.device_model)),
                    (1, st.sampled_from(rig.device_model)))


def set_variable_data(rig: Rig) -> st.SearchStrategy[dict[str, Any]]:
    """One SetVariableDataType: mostly a variable of the station's own device model, with
    a value of its kind at the edges (or garbage)."""
    generic = sp.PayloadStrategies(sp.schema("SetVariables", "Request"), rig.clock.now)
    generic_item = generic.node(generic.doc["properties"]["setVariableData"]["items"])
    known = device_model_items(rig)

    @st.composite
    def ours(draw: st.DrawFn) -> dict[str, Any]:
        item = draw(known)
        types = [a.get("type", "Actual") for a in item["variableAttribute"]]
        attribute = draw(st.sampled_from(types + ["Target", None]))
        data: dict[str, Any] = {
            "component": item["component"], "variable": item["variable"],
            "attributeValue": draw(value_texts(item.get("variableCharacteristics") or {}))}
        if attribute is not None:
            data["attributeType"] = attribute
        return data
    return weighted((3, ours()), (1, generic_item))


def get_variable_data(rig: Rig) -> st.SearchStrategy[dict[str, Any]]:
    generic = sp.PayloadStrategies(sp.schema("GetVariables", "Request"), rig.clock.now)
    generic_item = generic.node(generic.doc["properties"]["getVariableData"]["items"])

    @st.composite
    def ours(draw: st.DrawFn) -> dict[str, Any]:
        item = draw(st.sampled_from(rig.device_model))
        data = {"component": item["component"], "variable": item["variable"]}
        attribute = draw(st.sampled_from(["Actual", "Target", "MinSet", "MaxSet", None]))
        if attribute is not None:
            data["attributeType"] = attribute
        return data
    return weighted((3, ours()), (1, generic_item))


# Ids the station has: EVSEs 1 and 2 (0 is the station), one connector each.
EVSE_IDS = st.sampled_from([0, 1, 2, 1, 2]) | st.integers(-1, 3)
PLAUSIBLE = {"evseId": lambda: EVSE_IDS, "EVSEType.id": lambda: EVSE_IDS,
             # idTokenInfo.evseId (SendLocalList) is a list of them, not one.
             "IdTokenInfoType.evseId": lambda: st.lists(EVSE_IDS, min_size=1, max_size=3),
             "connectorId": lambda: st.sampled_from([1, 1, 0, 2]),
             "configurationSlot": lambda: st.sampled_from([2, 2, 1, 3, 0])}


@st.composite
def shaped_profile(draw: st.DrawFn, profile: dict[str, Any], purposes: list[str]
                   ) -> dict[str, Any]:
    """A drawn ChargingProfileType nudged past the rules of K01 (one schedule, periods
    from 0 upwards, 1 or 3 phases, a startSchedule where the kind needs one), keeping its
    extreme values (limits, dates, durations, ids): so they reach the schedule code."""
    profile = json.loads(json.dumps(profile))
    profile["chargingProfilePurpose"] = draw(st.sampled_from(purposes))
    if profile["chargingProfilePurpose"] != "TxProfile":
        profile.pop("transactionId", None)
    schedule = profile["chargingSchedule"][0]
    profile["chargingSchedule"] = [schedule]
    periods = sorted({p["startPeriod"]: p for p in schedule["chargingSchedulePeriod"]}.values(),
                     key=lambda p: p["startPeriod"])
    periods[0]["startPeriod"] = 0
    periods = sorted({p["startPeriod"]: p for p in periods}.values(),
                     key=lambda p: p["startPeriod"])
    for period in periods:
        period["limit"] = abs(period["limit"])
        period.pop("phaseToUse", None)
        phases = draw(st.sampled_from([None, 1, 3]))
        if phases is None:
            period.pop("numberPhases", None)
        else:
            period["numberPhases"] = phases
    schedule["chargingSchedulePeriod"] = periods
    for key in ("duration", "minChargingRate"):
        if key in schedule:
            schedule[key] = abs(schedule[key])
    if profile["chargingProfileKind"] == "Recurring":
        profile.setdefault("recurrencyKind", draw(st.sampled_from(["Daily", "Weekly"])))
    else:
        profile.pop("recurrencyKind", None)
    if profile["chargingProfileKind"] == "Relative":
        schedule.pop("startSchedule", None)
        if profile["chargingProfilePurpose"] == "ChargingStationMaxProfile":
            profile["chargingProfileKind"] = "Absolute"
    if profile["chargingProfileKind"] != "Relative" and "startSchedule" not in schedule:
        schedule["startSchedule"] = draw(sp.date_times(lambda: START))
    profile["stackLevel"] = draw(st.sampled_from([0, 1, 2, profile["stackLevel"] % 8]))
    return profile


@st.composite
def plausible_set_charging_profile(draw: st.DrawFn, base: st.SearchStrategy[Any]
                                   ) -> dict[str, Any]:
    payload = draw(base)
    purpose = draw(st.sampled_from(["TxDefaultProfile", "TxDefaultProfile",
                                    "ChargingStationMaxProfile", "TxProfile"]))
    payload["chargingProfile"] = draw(shaped_profile(payload["chargingProfile"], [purpose]))
    payload["evseId"] = 0 if purpose == "ChargingStationMaxProfile" else draw(
        st.sampled_from([0, 1, 2]) if purpose == "TxDefaultProfile" else st.sampled_from([1, 2]))
    return payload


@st.composite
def plausible_start(draw: st.DrawFn, base: st.SearchStrategy[Any]) -> dict[str, Any]:
    payload = draw(base)
    if "chargingProfile" in payload:
        payload["chargingProfile"] = draw(shaped_profile(payload["chargingProfile"],
                                                         ["TxProfile"]))
    return payload


@st.composite
def plausible_firmware(draw: st.DrawFn, base: st.SearchStrategy[Any], signing_pem: str
                       ) -> dict[str, Any]:
    """Signed by the manufacturer root the fuzz installed, so the request gets past the
    certificate check to its dates, retries and retry interval."""
    payload = draw(base)
    payload["firmware"]["signingCertificate"] = signing_pem
    payload["firmware"].setdefault("signature", "c2lnbmF0dXJl")
    return payload


@st.composite
def plausible_network_profile(draw: st.DrawFn, base: st.SearchStrategy[Any], url: str
                              ) -> dict[str, Any]:
    """A profile this station can use, for the test CSMS itself (so that switching to it
    keeps the fuzz connected), with whatever timeout and interface were drawn."""
    payload = draw(base)
    data = payload["connectionData"]
    data.update(ocppVersion="OCPP20", ocppTransport="JSON", ocppCsmsUrl=url,
                securityProfile=1)
    data.pop("vpn", None)
    return payload


def strategies_for(rig: Rig, action: str) -> st.SearchStrategy[dict[str, Any]]:
    """Three kinds of payload: generic ones with 32-bit integers, generic ones with any
    integer, and (where the action has them) plausible ones: ids this station has,
    variables of its device model, profiles that pass K01's rules, firmware signed by a
    root it trusts, each still with extreme values where the rules leave room."""
    urls_ = urls(rig.closed_port)
    fields: dict[str, Any] = {name: urls_ for name in URL_FIELDS}
    wide = sp.payloads(action, rig.clock.now, fields=fields)
    narrow = sp.payloads(action, rig.clock.now, fields=fields, wide=False)
    near = sp.payloads(action, rig.clock.now, fields={**fields, **PLAUSIBLE}, wide=False)
    if action == "SetVariables":
        most = rig.limits.items_per_message.get("SetVariables", 4)
        data = st.lists(set_variable_data(rig), min_size=1, max_size=min(most, 6))
        near = st.fixed_dictionaries({"setVariableData": data})
    elif action == "GetVariables":
        most = rig.limits.items_per_message.get("GetVariables", 4)
        data = st.lists(get_variable_data(rig), min_size=1, max_size=min(most, 8))
        near = st.fixed_dictionaries({"getVariableData": data})
    elif action == "SetChargingProfile":
        near = plausible_set_charging_profile(near)
    elif action == "RequestStartTransaction":
        near = plausible_start(near)
    elif action == "SetNetworkProfile" and rig.csms is not None:
        near = plausible_network_profile(near, rig.csms.url)
    elif action == "UpdateFirmware" and rig.firmware_pki is not None:
        near = plausible_firmware(near, rig.firmware_pki.signing_cert_pem)
    return weighted((3, near), (1, narrow), (1, wide))


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, by weight (st.one_of counts a strategy given twice once)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


# --- the tests ------------------------------------------------------------------------------

def accepted_actions(rig: Rig) -> list[str]:
    """The actions the station has a handler for, asked over the wire."""
    accepted = []
    for action in sp.csms_actions():
        answer = rig.run(rig.call(action, {"\u00e9probe": 1}))
        assert answer is not None and answer[0] == 4, (action, answer)
        if answer[2] == "NotSupported":
            continue
        # Validated, so routed: FormatViolation (the unknown property) or, first, a
        # required property missing.
        assert answer[2] in ("FormatViolation", "OccurrenceConstraintViolation"), (action, answer)
        accepted.append(action)
    return accepted


def fuzz(rig: Rig, action: str, strategy: st.SearchStrategy[dict[str, Any]],
         examples: int) -> None:
    """Hypothesis over one action: each payload sent over the link, its answer judged."""
    @fuzz_settings(examples)
    @given(payload=strategy)
    def one(payload: dict[str, Any]) -> None:
        problems = sp.errors(action, "Request", payload)
        assert not problems, f"generator made an invalid {action}: {problems}"
        text = json.dumps([2, f"fz{next(rig.ids)}", action, payload], ensure_ascii=False)
        rig.problems.seen.clear()
        answer = rig.run(rig.raw(text))
        if TRACE:
            print(f">> {text[:400]}\n<< {json.dumps(answer)[:400]}")
        rig.check_answer(action, payload, len(text.encode()), answer)
        if action == "Reset" and answer[0] == 3 and answer[2]["status"] == "Accepted" \
                and payload.get("evseId", 0) == 0:
            rig.run(rig.restarted())

    if SEED:
        one = seed(SEED)(one)
    one()


def test_every_accepted_action_survives_generated_payloads(rig: Rig) -> None:
    rig.run(rig.learn_device_model())
    rig.run(rig.trust_firmware_signer())
    actions = accepted_actions(rig)
    # A sanity floor, not the list: these have had handlers since the first releases.
    assert {"SetVariables", "GetVariables", "SetChargingProfile", "Reset"} <= set(actions)
    if ONLY:
        actions = [a for a in actions if a in ONLY]
    failures = []
    for action in actions:
        # Each action from a station that can charge: the one before may have taken
        # EVSEs out of service (and that was its right).
        rig.run(rig.all_operative())
        try:
            fuzz(rig, action, strategies_for(rig, action), EXAMPLES)
        except Exception as exc:  # noqa: BLE001 - every action's failure, not the first
            example = "\n".join(getattr(exc, "__notes__", []))
            failures.append(f"{action}: {type(exc).__name__}: {str(exc)[:1500]}\n"
                            f"{example[:1500]}")
    if TRACE:
        for action in actions:
            print(action, {o: n for (a, o), n in sorted(rig.outcomes.items()) if a == action})
    assert not failures, "\n\n".join(failures)
    rig.problems.seen.clear()
    rig.run(what_was_accepted_still_works(rig), timeout=180)
    assert rig.csms is not None and rig.csms.schema_errors == []


async def what_was_accepted_still_works(rig: Rig) -> None:
    """Whatever the fuzz left installed (variables, profiles, a pending remote start, a
    scheduled download): the station reports it in schema-valid messages, charges with
    it while its clock runs for hours, and starts again from its database."""
    assert rig.agent is not None
    # The station's own messages carry the values it accepted: reports, profiles,
    # composite schedules (every frame is checked by the CSMS's oracle).
    for request_id, base in enumerate(("FullInventory", "ConfigurationInventory"), 900):
        await rig.ok("GetBaseReport", {"requestId": request_id, "reportBase": base})
    await rig.ok("GetChargingProfiles", {"requestId": 910, "chargingProfile": {}})
    for evse_id in (0, 1, 2):
        for duration in (0, 3600, 86400 * 7):
            answer = await rig.ok("GetCompositeSchedule",
                                  {"evseId": evse_id, "duration": duration})
            assert answer["status"] == "Accepted", answer
    # A session on each EVSE: plug, a remote start and an RFID swipe.
    started_before = len(rig.transaction_events("Started"))
    await rig.all_operative()
    for evse_id in (1, 2):
        await rig.agent.sim("plug", evse_id)
    remote = await rig.call("RequestStartTransaction", {
        "idToken": {"idToken": "FUZZ-AFTER", "type": "ISO14443"}, "remoteStartId": 77,
        "evseId": 2})
    await rig.agent.sim("swipe", token="0A1B2C3D", evse=1)
    # Three hours of the station's clock in steps of its default aligned interval (every
    # timer due on the way fires in order): meter values, aligned data, heartbeats,
    # schedules changing, downloads retried, whatever was set.
    for _ in range(12):
        await rig.agent.advance(900)
        rig.assert_alive()
        assert not rig.problems.seen, rig.problems.seen
    # The fuzz's profiles may rightly hold charging at 0 A (so no transaction starts where
    # TxStartPoint is PowerPathClosed): without them, the sessions must get going.
    await rig.ok("ClearChargingProfile", {})
    for _ in range(2):
        await rig.agent.advance(900)
    rig.assert_alive()
    assert not rig.problems.seen, rig.problems.seen
    if len(rig.transaction_events("Started")) == started_before:
        status = (await rig.agent.sim("status"))["status"]
        settings_ = await rig.ok("GetVariables", {"getVariableData": [
            {"component": {"name": c}, "variable": {"name": v}} for c, v in (
                ("TxCtrlr", "TxStartPoint"), ("TxCtrlr", "TxStopPoint"),
                ("AuthCtrlr", "Enabled"), ("AuthCtrlr", "AuthorizeRemoteStart"),
                ("AuthCtrlr", "LocalPreAuthorize"), ("TxCtrlr", "EVConnectionTimeOut"))]})
        raise AssertionError(f"no session started after the fuzz: remote start {remote}, "
                             f"status {status}, settings {settings_}")
    # Every transaction still open (the fuzz's own remote starts too) ends when asked.
    running = set(rig.transaction_events("Started")) - set(rig.transaction_events("Ended"))
    for tx_id in running:
        answer = await rig.ok("RequestStopTransaction", {"transactionId": tx_id})
        assert answer["status"] == "Accepted", (tx_id, answer)
    for evse_id in (1, 2):
        await rig.agent.sim("unplug", evse_id)
    await rig.agent.advance(60)
    assert running <= set(rig.transaction_events("Ended")), running
    rig.assert_alive()
    assert not rig.problems.seen, rig.problems.seen
    status = (await rig.agent.sim("status"))["status"]
    assert status["connected"] is True, status
    # And from the same database, the station starts, connects and answers.
    await rig.restart_agent()
    answer = await rig.ok("GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
    assert answer["getVariableResult"][0]["attributeStatus"] == "Accepted", answer
    await rig.agent.advance(600)
    rig.assert_alive()
    assert not rig.problems.seen, rig.problems.seen


def test_schema_invalid_payloads_get_the_error_part4_names(rig: Rig) -> None:
    """Every accepted action, a valid payload broken at one point: the CALLERROR code of
    Part 4, 4.3 for that breakage, with the CALL's message id, and the station lives on."""
    actions = accepted_actions(rig)
    failures = []
    for action in actions:
        @fuzz_settings(max(5, EXAMPLES // 3))
        @given(broken=sp.broken_payloads(action, rig.clock.now))
        def one(broken: sp.Broken) -> None:
            assert bool(sp.errors(action, "Request", broken.payload)) != broken.schema_valid, \
                broken.what
            message_id = f"bad{next(rig.ids)}"
            rig.problems.seen.clear()
            answer = rig.run(rig.raw(json.dumps([2, message_id, action, broken.payload])))
            rig.assert_alive()
            assert not rig.problems.seen, rig.problems.seen
            assert answer is not None, f"{action}: no answer to {broken.what}"
            assert answer[:3] == [4, message_id, broken.code], (broken.what, answer)

        if SEED:
            one = seed(SEED)(one)
        try:
            one()
        except Exception as exc:  # noqa: BLE001 - every action's failure, not the first
            failures.append(f"{action}: {type(exc).__name__}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)


# Frames that are no valid CALL at all, and the answer Part 4 names: RpcFrameworkError
# with "-1" when the message id cannot be read (4.2.3), MessageTypeNotSupported (4.4),
# NotImplemented / NotSupported for unknown and unsupported actions, FormatViolation for
# a payload that is not an object and for a frame above the station's size limit.
BROKEN_FRAMES = [
    ("not json", ["-1", "RpcFrameworkError"]),
    ('[2, "t1", "Reset", {"type": "Immediate"}', ["-1", "RpcFrameworkError"]),
    ("{}", ["-1", "RpcFrameworkError"]),
    ("[]", ["-1", "RpcFrameworkError"]),
    ('[2, 17, "Reset", {}]', ["-1", "RpcFrameworkError"]),
    ('[2, "' + "x" * 37 + '", "Reset", {}]', ["-1", "RpcFrameworkError"]),
    ('[2, "t2", "Reset"]', ["t2", "RpcFrameworkError"]),
    ('[2, "t3", "Reset", {"type": "Immediate"}, 1]', ["t3", "RpcFrameworkError"]),
    ('[2, "t4", 7, {}]', ["t4", "RpcFrameworkError"]),
    ('[2, "t5", "Reset", []]', ["t5", "FormatViolation"]),
    ('[2, "t6", "Reset", "Immediate"]', ["t6", "FormatViolation"]),
    ('[7, "t7", {}]', ["t7", "MessageTypeNotSupported"]),
    ('["2", "t8", "Reset", {}]', ["t8", "RpcFrameworkError"]),
    ('[2, "t9", "NoSuchAction", {}]', ["t9", "NotImplemented"]),
    ('[2, "t10", "BootNotification", {"reason": "PowerUp", "chargingStation": '
     '{"model": "m", "vendorName": "v"}}]', ["t10", "NotSupported"]),
    ('[2, "t11", "GetCompositeSchedule", {"duration": NaN, "evseId": 1}]',
     ["-1", "RpcFrameworkError"]),
    ('[2, "t12", "GetCompositeSchedule", {"duration": 1e400, "evseId": 1}]',
     ["t12", "TypeConstraintViolation"]),
    ('[2, "t13", "GetCompositeSchedule", {"duration": 1' + "0" * 5000 + ', "evseId": 1}]',
     ["t13", "TypeConstraintViolation"]),
    ('[2, "t14", "GetCompositeSchedule", {"duration": 60, "evseId": 1.0}]',
     ["t14", "TypeConstraintViolation"]),
    ('[2, "t15", "ClearChargingProfile", {"chargingProfileId": 9223372036854775808}]',
     ["t15", "TypeConstraintViolation"]),
    ('[2, "t16", "ClearCache", {"customData": {"vendorId": "v", "x": ' + "[" * 150
     + "]" * 150 + "}}]", ["t16", "FormatViolation"]),
    ('[2, "t17", "GetVariables", {"getVariableData": [{"component": {"name": "'
     + "a" * MAX_FRAME_BYTES + '"}, "variable": {"name": "v"}}]}]', ["t17", "FormatViolation"]),
]


def test_broken_frames_get_the_error_part4_names(rig: Rig) -> None:
    async def main() -> None:
        for text, expected in BROKEN_FRAMES:
            answer = await rig.raw(text)
            assert answer is not None and answer[0] == 4, (text[:80], answer)
            assert answer[1:3] == expected, (text[:80], answer)
            rig.assert_alive()
        # Answers to calls the station never made are not answered (they could ping-pong).
        assert await rig.raw('[3, "never-sent", {}]', timeout=0.5) is None
        assert await rig.raw('[4, "never-sent", "GenericError", "", {}]', timeout=0.5) is None
        # And the station still works.
        answer = await rig.ok("GetVariables", {"getVariableData": [
            {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
        assert answer["getVariableResult"][0]["attributeStatus"] == "Accepted"
    rig.run(main())
    assert rig.problems.seen == []


# --- what the fuzz found, pinned: the exact payload and the exact answer -------------------

LATE = "9999-12-31T23:59:59.999-12:00"    # year 10000 in UTC
EARLY = "0001-01-01T00:00:00+14:00"       # year 0 in UTC


def _tx_default(profile_id: int, **extra: Any) -> dict[str, Any]:
    return {"id": profile_id, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative", "chargingSchedule": [{
                "id": 1, "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}], **extra}


def _beyond(field: str, value: int) -> list[Any]:
    shown = str(value) if value.bit_length() <= 64 else "a very large integer"
    return [4, "TypeConstraintViolation",
            f"{field}: {shown} is not an OCPP integer (32-bit signed)"]


# (what it was, action, payload, the answer: [3, payload] or [4, code, description]).
# Before issue 14 most of these got InternalError; the leap second was refused with
# PropertyConstraintViolation though the schema allows it, and the network profile was
# Accepted and broke each connection made on it later.
FOUND = [
    ("2**63 reached SQLite", "SetChargingProfile",
     {"evseId": 0, "chargingProfile": _tx_default(2 ** 63)},
     _beyond("chargingProfile.id", 2 ** 63)),
    ("2**63 reached SQLite", "ClearChargingProfile", {"chargingProfileId": 2 ** 63},
     _beyond("chargingProfileId", 2 ** 63)),
    ("2**63 reached SQLite", "ClearChargingProfile",
     {"chargingProfileCriteria": {"stackLevel": 2 ** 63}},
     _beyond("chargingProfileCriteria.stackLevel", 2 ** 63)),
    ("10**30 reached SQLite", "GetChargingProfiles",
     {"requestId": 1, "evseId": 10 ** 30, "chargingProfile": {}}, _beyond("evseId", 10 ** 30)),
    ("OverflowError in parse_datetime", "SetChargingProfile",
     {"evseId": 0, "chargingProfile": _tx_default(5, validTo=LATE)}, [3, {"status": "Accepted"}]),
    ("OverflowError in parse_datetime", "SetChargingProfile",
     {"evseId": 0, "chargingProfile": _tx_default(6, stackLevel=1, validFrom=EARLY)},
     [3, {"status": "Accepted"}]),
    ("a leap second refused", "SetChargingProfile",
     {"evseId": 0, "chargingProfile": {**_tx_default(7, stackLevel=2),
                                       "chargingProfileKind": "Absolute", "chargingSchedule": [{
                                           **_tx_default(7)["chargingSchedule"][0],
                                           "startSchedule": "2016-12-31T23:59:60Z"}]}},
     [3, {"status": "Accepted"}]),
    ("accepted, then every connection on it failed its hook", "SetNetworkProfile",
     {"configurationSlot": 2, "connectionData": {
         "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": "ws://127.0.0.1:9/",
         "messageTimeout": 2 ** 31 - 1, "securityProfile": 1, "ocppInterface": "Wired0"}},
     [3, {"status": "Rejected", "statusInfo": {
         "reasonCode": "ValueOutOfRange", "additionalInfo":
             "messageTimeout 2147483647 s is outside 1..3600 s (OCPPCommCtrlr.MessageTimeout)"}}]),
    ("ValueError in composite_schedule", "GetCompositeSchedule",
     {"duration": -1, "evseId": 1},
     [3, {"status": "Rejected", "statusInfo": {"reasonCode": "ValueTooLow",
                                               "additionalInfo": "duration -1 s is negative"}}]),
    ("ValueError in composite_schedule", "GetCompositeSchedule",
     {"duration": -(2 ** 31), "evseId": 0},
     [3, {"status": "Rejected", "statusInfo": {
         "reasonCode": "ValueTooLow", "additionalInfo": "duration -2147483648 s is negative"}}]),
]


def test_what_the_fuzz_found_gets_its_answer(rig: Rig) -> None:
    async def main() -> None:
        for what, action, payload, expected in FOUND:
            answer = await rig.call(action, payload)
            assert answer is not None, (what, action)
            got = [answer[0], answer[2]] if answer[0] == 3 else [4, answer[2], answer[3]]
            assert got == expected, (what, action, answer)
        # GetLog over all of time (to a port that refuses: the upload fails later).
        url = f"http://127.0.0.1:{rig.closed_port}/logs"
        answer = await rig.ok("GetLog", {"logType": "DiagnosticsLog", "requestId": 3, "log": {
            "remoteLocation": url, "oldestTimestamp": EARLY, "latestTimestamp": LATE}})
        assert answer["status"] == "Accepted", answer
        # UpdateFirmware to be installed "never" (the download is tried, and fails).
        await rig.trust_firmware_signer()
        assert rig.firmware_pki is not None
        answer = await rig.ok("UpdateFirmware", {"requestId": 4, "retries": 0, "firmware": {
            "location": f"http://127.0.0.1:{rig.closed_port}/fw.img",
            "retrieveDateTime": "2026-01-01T00:00:00Z", "installDateTime": LATE,
            "signingCertificate": rig.firmware_pki.signing_cert_pem, "signature": "c2ln"}})
        assert answer["status"] == "Accepted", answer
        await rig.agent.advance(60)
    rig.run(main())
    rig.assert_alive()
    assert rig.problems.seen == []


# Issue 14 item 1: values that put the station in a crash loop. The device model's bounds
# (OCPP's 32-bit integer, and each variable's own maximum) refuse them.
CRASH_LOOP = [("SampledDataCtrlr", "TxUpdatedInterval"),
              ("SampledDataCtrlr", "TxEndedInterval"),
              ("AlignedDataCtrlr", "TxEndedInterval"), ("AlignedDataCtrlr", "Interval"),
              ("OCPPCommCtrlr", "HeartbeatInterval"), ("OCPPCommCtrlr", "WebSocketPingInterval"),
              ("OCPPCommCtrlr", "OfflineThreshold"), ("TxCtrlr", "EVConnectionTimeOut"),
              ("AuthCacheCtrlr", "LifeTime"), ("TxCtrlr", "MaxEnergyOnInvalidId")]


def test_crash_loop_values_are_rejected_and_a_session_runs(rig: Rig) -> None:
    async def main() -> None:
        for value in ("9223372036854775808", "2147483647", "86400000000000"):
            answer = await rig.ok("SetVariables", {"setVariableData": [
                {"component": {"name": c}, "variable": {"name": v}, "attributeValue": value}
                for c, v in CRASH_LOOP]})
            for result in answer["setVariableResult"]:
                assert (result["attributeStatus"], result["attributeStatusInfo"]["reasonCode"]) \
                    == ("Rejected", "ValueOutOfRange"), (value, result)
        await rig.agent.sim("plug", 1)
        await rig.agent.sim("swipe", token="0A1B2C3D", evse=1)
        started = await rig.link.expect_call("TransactionEvent", timeout=10,
                                             where=lambda p: p["eventType"] == "Started")
        for _ in range(6):
            await rig.agent.advance(600)
        await rig.agent.sim("unplug", 1)
        await rig.agent.advance(60)
        ended = await rig.link.expect_call("TransactionEvent", timeout=10,
                                           where=lambda p: p["eventType"] == "Ended")
        assert ended["transactionInfo"]["transactionId"] == \
            started["transactionInfo"]["transactionId"]
    rig.run(main())
    rig.assert_alive()
    assert rig.problems.seen == []


def test_a_database_holding_a_crash_loop_value_starts(rig: Rig) -> None:
    """Put there by an older version (or by hand): the station starts, connects and
    charges; the value is back to its default."""
    import sqlite3
    assert rig.agent is not None
    rig.run(rig.agent.__aexit__(None, None, None))
    db = next(rig.agent.config.storage.dir.glob("*.db"))
    poisoned = 0
    with sqlite3.connect(db) as conn:
        for component, variable in CRASH_LOOP:
            poisoned += conn.execute(
                "UPDATE device_model_value SET value = ? WHERE component = ? AND "
                "variable = ? AND attribute = 'Actual'",
                ("9223372036854775808", component, variable)).rowcount
    conn.close()
    assert poisoned >= len(CRASH_LOOP) - 1, poisoned   # all but those of absent features

    async def main() -> None:
        await rig.restart_agent(already_stopped=True)
        answer = await rig.ok("GetVariables", {"getVariableData": [{
            "component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"}}]})
        value = answer["getVariableResult"][0]["attributeValue"]
        assert 0 <= int(value) <= 86400, value
        await rig.agent.sim("plug", 1)
        await rig.agent.sim("swipe", token="0A1B2C3D", evse=1)
        await rig.link.expect_call("TransactionEvent", timeout=10,
                                   where=lambda p: p["eventType"] == "Started")
        for _ in range(6):
            await rig.agent.advance(600)
    rig.run(main())
    rig.assert_alive()
    assert [p for p in rig.problems.seen if "InvalidStoredValue" not in p] == []


def test_empty_tx_start_and_stop_points_are_rejected(rig: Rig) -> None:
    """TxStartPoint '' let the station charge with no transaction at all (energy
    delivered, nothing billed); TxStopPoint '' kept a transaction open after unplug."""
    answer = rig.run(rig.ok("SetVariables", {"setVariableData": [
        {"component": {"name": "TxCtrlr"}, "variable": {"name": name}, "attributeValue": ""}
        for name in ("TxStartPoint", "TxStopPoint")]}))
    assert [r["attributeStatus"] for r in answer["setVariableResult"]] == ["Rejected"] * 2


def test_edge_date_times_are_read_and_written_as_rfc3339() -> None:
    from agent.clock import EARLIEST, LATEST, format_datetime, parse_datetime
    # What a CSMS sent is read with clamp=True: the instant datetime holds nearest.
    assert parse_datetime(EARLY, clamp=True) == EARLIEST
    assert parse_datetime(LATE, clamp=True) == LATEST
    for edge in (EARLY, LATE):    # an OverflowError no caller expected, before
        with pytest.raises(ValueError):
            parse_datetime(edge)
    assert parse_datetime("0001-01-01T00:00:00-14:00") == EARLIEST + timedelta(hours=14)
    assert parse_datetime("9999-12-31T23:59:59+12:00") == LATEST.replace(
        hour=11, minute=59, second=59, microsecond=0)
    # Year 1 was written "1-01-01T..." (glibc strftime): not RFC 3339, not readable back.
    assert format_datetime(EARLIEST) == "0001-01-01T00:00:00.000Z"
    assert format_datetime(LATEST) == "9999-12-31T23:59:59.999Z"
    for moment in (EARLIEST, LATEST.replace(microsecond=999000)):
        assert parse_datetime(format_datetime(moment)) == moment
    # A leap second (valid RFC 3339, so the schemas allow it) used to be refused with
    # PropertyConstraintViolation: it is the last instant of second 59.
    assert parse_datetime("2016-12-31T23:59:60Z") == datetime(
        2016, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    assert parse_datetime("2017-01-01T05:29:60.5+05:30") == parse_datetime(
        "2016-12-31T23:59:60Z")
    with pytest.raises(ValueError):
        parse_datetime("2016-12-31T23:59:61Z")


def test_a_csms_clock_at_the_end_of_time_is_not_taken(rig: Rig) -> None:
    """currentTime 9999-12-31T23:59:59Z is valid RFC 3339; a station that took it could
    no longer compute any deadline (year 10000 does not exist for datetime), so every
    handler reading the clock failed with InternalError."""
    assert rig.csms is not None
    rig.csms.now = lambda: datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)

    async def main() -> None:
        answer = await rig.ok("TriggerMessage", {"requestedMessage": "Heartbeat"})
        assert answer["status"] == "Accepted"
        await rig.link.expect_call("Heartbeat", timeout=10)
        await rig.agent.advance(3600)
        answer = await rig.ok("GetVariables", {"getVariableData": [
            {"component": {"name": "ClockCtrlr"}, "variable": {"name": "DateTime"}}]})
        assert answer["getVariableResult"][0]["attributeValue"].startswith("2026-"), answer
        answer = await rig.ok("GetCompositeSchedule", {"evseId": 1, "duration": 86400})
        assert answer["status"] == "Accepted"
    rig.run(main())
    rig.assert_alive()
    assert rig.problems.seen == []
