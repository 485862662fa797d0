"""The PN532 reader: its frames against the golden frames (published captures and the NXP
user manual), then the driver on a pseudo-terminal against a simulated PN532
(tests/pn532_sim.py, written from the user manual, sharing no code with the driver).

Time (polls, answer timeouts, retries, the repeat window) is a ManualClock; only real I/O
through the pty and the reader's threads is waited for, with a bound.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from hypothesis import given, settings, strategies as st

from agent.clock import ManualClock
from hal.api import HalConfigError, PresentedToken
from hal.drivers import DriverSpec, backend, check, create
from hal.drivers.pn532 import Pn532Reader
from hal.drivers.pn532.reader import ATTEMPTS
from hal.drivers.pn532.frames import (
    ACK, NACK, WAKEUP, Ack, Broken, Command, ErrorFrame, Firmware, FrameError, FrameParser,
    Information, Nack, TargetA, command_frame, parse_targets_a)
from tests.pn532_sim import GOLDEN, Card, Pn532Sim, information_frame

CLASSIC_A = Card(bytes.fromhex("FB0EE20B"))                   # the captured card
CLASSIC_B = Card(bytes.fromhex("A1B2C3D4"))
DESFIRE = Card(bytes.fromhex("04453501DB2480"), sens_res=b"\x03\x44", sel_res=0x20,
               ats=bytes.fromhex("0675778102 80".replace(" ", "")))
PHONE = Card(bytes.fromhex("08A1B2C3"), sens_res=b"\x00\x04", sel_res=0x20, ats=b"\x01")


def gold(name: str) -> bytes:
    return GOLDEN[name].frame


# -- golden frames: both sides ------------------------------------------------------------------

def test_the_driver_writes_the_golden_commands():
    assert WAKEUP + command_frame(Command.SAM_CONFIGURATION, b"\x01") == gold(
        "wake-up and SAMConfiguration normal mode")
    assert command_frame(Command.GET_FIRMWARE_VERSION) == gold("GetFirmwareVersion")
    assert command_frame(Command.RF_CONFIGURATION, bytes.fromhex("05FF0102")) == gold(
        "RFConfiguration MaxRetries: passive activation 2")
    assert command_frame(Command.IN_LIST_PASSIVE_TARGET, b"\x01\x00") == gold(
        "InListPassiveTarget 1 target 106 kbps type A")
    assert (ACK, NACK) == (gold("ACK"), gold("NACK"))


def test_the_driver_reads_the_golden_answers():
    def one(name: str) -> Any:
        events = FrameParser().feed(gold(name))
        assert len(events) == 1, (name, events)
        return events[0]

    assert one("ACK") == Ack() and one("NACK") == Nack() and one("error frame") == ErrorFrame()
    assert one("SAMConfiguration answer") == Information(0xD5, 0x15, b"")
    firmware = one("GetFirmwareVersion answer: PN532 V1.6")
    assert Firmware.parse(firmware.data) == Firmware(0x32, 1, 6, 7)
    four = one("InListPassiveTarget answer: 4-byte UID FB0EE20B")
    assert four.code == 0x4B
    assert parse_targets_a(four.data) == [TargetA(1, b"\x00\x04", 0x08,
                                                  bytes.fromhex("FB0EE20B"))]
    seven = parse_targets_a(one("InListPassiveTarget answer: 7-byte UID 04453501DB2480 with "
                                "ATS").data)
    assert [(t.uid_hex, t.sens_res.hex(), t.sel_res, t.ats.hex()) for t in seven] == [
        ("04453501DB2480", "0344", 0x20, "067577810280")]
    assert parse_targets_a(one("InListPassiveTarget answer: no card").data) == []


def test_the_simulator_writes_the_golden_answers():
    assert information_frame(0xD5, b"\x15") == gold("SAMConfiguration answer")
    assert information_frame(0xD5, b"\x03\x32\x01\x06\x07") == gold(
        "GetFirmwareVersion answer: PN532 V1.6")
    assert information_frame(0xD5, b"\x4b\x01" + CLASSIC_A.target_data(1)) == gold(
        "InListPassiveTarget answer: 4-byte UID FB0EE20B")
    assert information_frame(0xD5, b"\x4b\x01" + DESFIRE.target_data(1)) == gold(
        "InListPassiveTarget answer: 7-byte UID 04453501DB2480 with ATS")
    assert information_frame(0xD5, b"\x4b\x00") == gold("InListPassiveTarget answer: no card")
    assert information_frame(0xD4, b"\x4a\x01\x00") == gold(
        "InListPassiveTarget 1 target 106 kbps type A")


# -- the frame parser ---------------------------------------------------------------------------

def test_frames_split_across_reads_are_joined():
    stream = gold("ACK") + gold("InListPassiveTarget answer: 4-byte UID FB0EE20B")
    parser = FrameParser()
    events = [e for b in stream for e in parser.feed(bytes([b]))]
    assert events[0] == Ack() and isinstance(events[1], Information) and len(events) == 2


@pytest.mark.parametrize("broken, reason", [
    (bytes.fromhex("0000FF0CF5D54B010100040804FB0EE20BD800"), "length checksum"),
    (bytes.fromhex("0000FF0CF4D54B010100040804FB0EE20BD900"), "data checksum"),
    (bytes.fromhex("0000FF0CF4D54B010100040804FB0EE20BD8FF"), "postamble"),
])
def test_broken_frames_are_reported_and_the_next_good_one_found(broken: bytes, reason: str):
    events = FrameParser().feed(b"\xff\x13noise" + broken + gold("SAMConfiguration answer"))
    assert Broken(reason) in events
    assert events[-1] == Information(0xD5, 0x15, b"")


@given(st.binary(max_size=300))
def test_the_parser_never_raises_on_random_bytes(data: bytes):
    parser = FrameParser()
    for event in parser.feed(data):
        assert isinstance(event, (Ack, Nack, ErrorFrame, Broken, Information))


@settings(max_examples=200)
@given(st.lists(st.tuples(st.binary(max_size=20), st.sampled_from(sorted(GOLDEN))), max_size=5),
       st.integers(min_value=1, max_value=17))
def test_every_good_frame_is_found_in_noise(parts: list[tuple[bytes, str]], chunk: int):
    names = [n for _, n in parts if n != "wake-up and SAMConfiguration normal mode"]
    stream = b"".join(noise + gold(n) for noise, n in parts if n in names)
    parser = FrameParser()
    events = [e for i in range(0, len(stream), chunk) for e in parser.feed(stream[i:i + chunk])]
    good = [e for e in events if not isinstance(e, Broken)]
    expected = [FrameParser().feed(gold(n))[0] for n in names]
    it = iter(good)     # noise may hold frames of its own; the golden ones come in order
    assert all(e in it for e in expected), (good, expected)


def test_malformed_target_data_is_an_error():
    for data in (b"", b"\x01\x01\x00\x04\x08\x05abcde", b"\x01\x01\x00\x04\x08\x07\x04\x45",
                 b"\x01\x01\x03\x44\x20\x07\x04\x45\x35\x01\xdb\x24\x80\x09\x75", b"\x03"):
        with pytest.raises(FrameError):
            parse_targets_a(data)


# -- settings -----------------------------------------------------------------------------------

def test_check_config_accepts_defaults_and_names_bad_keys(tmp_path: Path):
    port = tmp_path / "ttyS1"
    port.touch()
    Pn532Reader.check_config({"port": str(port)})
    reader = Pn532Reader.from_config({"port": str(port)}, clock=ManualClock())
    assert (reader.settings.baudrate, reader.settings.id_token_type, reader.settings.poll_s) == (
        115200, "ISO14443", 0.25)
    for bad, key in [({}, "port"), ({"port": str(tmp_path / "nope")}, "port"),
                     ({"port": str(port), "baudrate": "115200"}, "baudrate"),
                     ({"port": str(port), "poll_s": 0}, "poll_s"),
                     ({"port": str(port), "timeout_s": -1}, "timeout_s"),
                     ({"port": str(port), "repeat_s": float("nan")}, "repeat_s"),
                     ({"port": str(port), "id_token_type": "Mifare"}, "id_token_type"),
                     ({"port": str(port), "protocol": "pn532"}, "protocol")]:
        with pytest.raises(HalConfigError) as err:
            Pn532Reader.check_config(bad)
        assert err.value.key == key, bad


def test_the_registry_finds_the_driver(tmp_path: Path):
    port = tmp_path / "ttyS1"
    port.touch()
    assert backend("reader", "pn532") is Pn532Reader
    spec = DriverSpec(role="reader", driver="pn532", settings={"port": str(port)})
    check(spec)
    assert isinstance(create(spec, ManualClock()), Pn532Reader)


# -- the driver against the simulated PN532 -----------------------------------------------------

async def until(cond: Callable[[], bool], what: str) -> None:
    """Wait for real I/O through the pty and the reader's threads; bounded."""
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


class Bench:
    def __init__(self, reader: Pn532Reader, sim: Pn532Sim, clock: ManualClock) -> None:
        self.reader, self.sim, self.clock = reader, sim, clock
        self.tokens: AsyncIterator[PresentedToken] = reader.tokens()
        self.seen: list[PresentedToken] = []
        self._pending: asyncio.Future[PresentedToken] | None = None

    async def polls(self, n: int = 1) -> None:
        """Let the reader poll n more times (each after poll_s on the clock)."""
        for _ in range(n):
            done = self.reader.polls
            await self.clock.advance(self.reader.settings.poll_s)
            await until(lambda: self.reader.polls > done, "a poll")
        self._collect()

    def _collect(self) -> None:
        while not self.reader._queue.empty():
            self.seen.append(self.reader._queue.get_nowait())

    def taken(self) -> list[str]:
        self._collect()
        uids = [t.uid for t in self.seen]
        self.seen.clear()
        return uids


def run_bench(tmp_path: Path, body: Callable[[Bench], Awaitable[None]], **settings_: Any) -> None:
    async def main() -> None:
        sim = Pn532Sim(tmp_path / "ttyNFC")
        clock = ManualClock()
        reader = Pn532Reader.from_config({"port": str(sim.link), "poll_s": 0.5, "repeat_s": 1.0,
                                          **settings_}, clock=clock)
        await reader.start()
        bench = Bench(reader, sim, clock)
        try:
            await until(lambda: reader.polls >= 1, "the PN532 woken and polled")
            await body(bench)
        finally:
            await reader.stop()
            sim.close()
    asyncio.run(asyncio.wait_for(main(), 30))


def test_it_wakes_the_pn532_and_configures_it_before_polling(tmp_path: Path):
    async def body(b: Bench) -> None:
        assert b.sim.woken == 1
        assert b.sim.codes()[:4] == [0x14, 0x02, 0x32, 0x4A]
        assert b.sim.commands[0] == (0x14, b"\x01")                 # normal mode
        assert b.sim.commands[2] == (0x32, bytes.fromhex("05FF0102"))   # bounded retries
        assert b.reader.firmware == Firmware(0x32, 1, 6, 7)
        await b.polls(3)                                 # an empty field: nothing, no fault
        assert b.taken() == [] and b.reader.fault is None
    run_bench(tmp_path, body)


def test_a_held_card_is_one_token_and_counts_again_after_it_was_away(tmp_path: Path):
    async def body(b: Bench) -> None:
        b.sim.present(CLASSIC_A)
        await b.polls()
        assert b.seen == [PresentedToken("FB0EE20B", "ISO14443")]
        b.seen.clear()
        await b.polls(6)                                 # held for 3 s: still one
        assert b.taken() == []
        b.sim.present(None)                              # removed ...
        await b.polls(2)                                 # ... for the 1 s window
        b.sim.present(CLASSIC_A)                         # and presented again
        await b.polls()
        assert b.taken() == ["FB0EE20B"]
    run_bench(tmp_path, body)


def test_two_different_cards_are_two_tokens(tmp_path: Path):
    async def body(b: Bench) -> None:
        b.sim.present(CLASSIC_A)
        await b.polls()
        b.sim.present(CLASSIC_B)
        await b.polls()
        assert b.taken() == ["FB0EE20B", "A1B2C3D4"]
    run_bench(tmp_path, body)


def test_a_seven_byte_uid_is_reported_whole(tmp_path: Path):
    async def body(b: Bench) -> None:
        b.sim.present(DESFIRE)
        await b.polls()
        assert b.seen == [PresentedToken("04453501DB2480", "ISO14443")]
    run_bench(tmp_path, body)


def test_a_random_uid_is_not_a_token(tmp_path: Path):
    async def body(b: Bench) -> None:
        b.sim.present(PHONE)                             # a phone: 08 xx xx xx, new each read
        await b.polls(2)
        b.sim.present(CLASSIC_B)
        await b.polls()
        assert b.taken() == ["A1B2C3D4"]
    run_bench(tmp_path, body)


def test_noise_and_broken_answers_on_the_line(tmp_path: Path):
    async def body(b: Bench) -> None:
        b.sim.noise = b"\xff\x13\x00\xa7\x55"             # junk before every frame
        b.sim.corrupt = 1                                  # an answer with a wrong DCS
        b.sim.present(CLASSIC_A)
        await b.polls()
        assert b.taken() == ["FB0EE20B"]
        assert b.sim.nacks == 1                            # it asked for it again
        # Junk that looks like the head of a 48-byte frame (00 FF, LEN 30, LCS D0) before
        # every frame: the frames after it are found all the same.
        b.sim.noise = b"\x00\xff\x30\xd0\x01"
        b.sim.present(CLASSIC_B)
        await b.polls()
        assert b.taken() == ["A1B2C3D4"]
        assert b.reader.fault is None
    run_bench(tmp_path, body)


def test_an_error_frame_loses_one_poll_not_the_reader(tmp_path: Path):
    async def body(b: Bench) -> None:
        b.sim.refuse_lists = 1
        b.sim.present(CLASSIC_A)
        await b.polls()
        assert b.taken() == [] and b.reader.fault is None
        await b.polls()
        assert b.taken() == ["FB0EE20B"]
    run_bench(tmp_path, body)


async def unanswered(b: Bench, after_s: float, sends: int) -> None:
    """Move the clock on by after_s, then let this many sends of a command go unanswered:
    each time wait until it reached the PN532 (its ACK timer is armed before it is
    written), then let the timer run out."""
    heard = b.sim.received
    await b.clock.advance(after_s)
    for _ in range(sends):
        await until(lambda: b.sim.received > heard and b.clock.sleepers == 1, "a command sent")
        heard = b.sim.received
        await b.clock.advance(b.reader.settings.timeout_s)


def test_one_unanswered_command_is_sent_again_not_a_fault(tmp_path: Path):
    async def body(b: Bench) -> None:
        b.sim.present(CLASSIC_A)
        b.sim.silent = True                                # one frame lost, say
        polls, heard = b.reader.polls, b.sim.received
        await b.clock.advance(b.reader.settings.poll_s)
        await until(lambda: b.sim.received > heard and b.clock.sleepers == 1, "the poll sent")
        b.sim.silent = False
        await b.clock.advance(b.reader.settings.timeout_s)
        await until(lambda: b.reader.polls > polls, "the poll, sent again")
        assert b.taken() == ["FB0EE20B"] and b.reader.fault is None
    run_bench(tmp_path, body)


def test_a_pn532_that_stops_answering_is_a_fault_until_it_answers_again(tmp_path: Path):
    async def body(b: Bench) -> None:
        changes: list[str | None] = []
        b.reader.subscribe(lambda: changes.append(b.reader.fault))
        b.sim.silent = True                                # power lost, say
        # The next poll goes unanswered, sent three times in all.
        await unanswered(b, b.reader.settings.poll_s, ATTEMPTS)
        await until(lambda: b.reader.fault is not None, "the fault")
        assert "no ACK to IN_LIST_PASSIVE_TARGET" in b.reader.fault

        await unanswered(b, b.reader.settings.retry_s, ATTEMPTS)   # still silent then
        await until(lambda: "SAM_CONFIGURATION" in (b.reader.fault or ""), "the failed wake-up")

        b.sim.power_cycle()                                # back, asleep in LowVbat
        b.sim.present(CLASSIC_B)
        polls = b.reader.polls
        await b.clock.advance(b.reader.settings.retry_s)
        await until(lambda: b.reader.polls > polls, "a poll after the wake-up")
        assert b.reader.fault is None and b.sim.woken == 2
        assert b.taken() == ["A1B2C3D4"]
        assert changes[0] is not None and changes[-1] is None
    run_bench(tmp_path, body)


def test_a_port_that_vanishes_is_a_fault_and_is_reopened(tmp_path: Path):
    async def body(b: Bench) -> None:
        b.sim.vanish()                                     # the USB adapter is unplugged
        await until(lambda: b.reader.fault is not None and not b.reader.port_open, "the fault")
        assert "PN532 reader on" in b.reader.fault
        b.sim = Pn532Sim(b.sim.link)                       # plugged back, same udev name
        b.sim.present(DESFIRE)
        polls = b.reader.polls
        await b.clock.advance(b.reader.settings.retry_s)
        await until(lambda: b.reader.polls > polls, "a poll on the reopened port")
        assert b.reader.fault is None
        assert b.taken() == ["04453501DB2480"]
        b.sim.close()
    run_bench(tmp_path, body)


def test_a_missing_port_is_a_fault_not_an_exception(tmp_path: Path):
    async def main() -> None:
        reader = Pn532Reader.from_config({"port": str(tmp_path / "ttyNone")}, clock=ManualClock())
        await reader.start()
        await until(lambda: reader.fault is not None, "the fault")
        assert "cannot open" in reader.fault
        await reader.stop()
    asyncio.run(main())
