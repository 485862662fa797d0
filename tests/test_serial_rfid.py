"""The serial RFID reader: its frame parser alone, then the driver reading a pseudo-terminal
by name, as it would read /dev/ttyUSB0. Time (repeat window, reopen interval) is a
ManualClock; only the reader thread's real I/O is waited for, with a bound.
"""

from __future__ import annotations

import asyncio
import os
import tty
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
from hypothesis import given, settings, strategies as st

from agent.clock import ManualClock
from hal.api import HalConfigError, PresentedToken
from hal.drivers import DriverSpec, backend, check, create
from hal.drivers.serial_rfid import Rdm6300Parser, SerialRfidReader, rdm6300_frame

CARD_A = "1A0032F1C5"
CARD_B = "0400E5B7A9"
CARD_C = "7F00000001"
CARD_D = "00000000FF"


def frame(uid: str, *, checksum: int | None = None) -> bytes:
    """Built here from the datasheet, not with the module's helper: an independent oracle."""
    raw = bytes.fromhex(uid)
    check = 0
    for b in raw:
        check ^= b
    if checksum is not None:
        check = checksum
    return b"\x02" + uid.encode() + f"{check:02X}".encode() + b"\x03"


# Frames read off RDM6300 modules and published byte for byte: the golden frames that
# `frame()` above (written from the datasheet's format) and the driver must both agree with.
PUBLISHED = [
    # forum.arduino.cc/t/rfid-data-format-rdm6300-vs-em4100-readers/251993:
    # "Arduino reader reads: 2,48,49,48,48,54,51,69,57,65,69,50,53,3"
    (bytes([2, 48, 49, 48, 48, 54, 51, 69, 57, 65, 69, 50, 53, 3]), "010063E9AE"),
    # eevblog.com forum, "RFID 125khz cards, RDM6300 reader trying to make sense of the
    # readings": "6F007B39725F ... Message-Head: 2 ... Message-Checksum (HEX): 5F ... Tail: 3"
    (b"\x02" + b"6F007B39725F" + b"\x03", "6F007B3972"),
]


@pytest.mark.parametrize("raw, uid", PUBLISHED)
def test_published_frames_are_read_and_built_alike(raw: bytes, uid: str) -> None:
    assert Rdm6300Parser().feed(raw) == [uid]
    assert frame(uid) == raw
    assert rdm6300_frame(uid) == raw


# -- parser -----------------------------------------------------------------------------------

def test_parser_reads_frames_and_uppercases() -> None:
    p = Rdm6300Parser()
    assert p.feed(frame(CARD_A) + frame(CARD_B)) == [CARD_A, CARD_B]
    assert p.feed(frame(CARD_A.lower())) == [CARD_A]
    assert rdm6300_frame(CARD_A) == frame(CARD_A)


def test_parser_joins_frames_split_across_reads() -> None:
    p = Rdm6300Parser()
    data = frame(CARD_A)
    assert [uid for b in data for uid in p.feed(bytes([b]))] == [CARD_A]


@pytest.mark.parametrize("broken", [
    frame(CARD_A, checksum=0x00),                    # bad checksum
    frame(CARD_A)[:7],                               # cut short (then the next frame)
    frame(CARD_A)[:-1],                              # no ETX (then the next frame)
    frame(CARD_A)[:-1] + b"\x04",                    # wrong end byte
    b"\x02" + CARD_A.encode() + b"0\x03",            # one checksum digit short
    b"\x02" + b"G" * 12 + b"\x03",                   # not hex
    b"\x02\x02\x02",                                 # a burst of STX
])
def test_parser_skips_broken_frames_without_losing_the_next(broken: bytes) -> None:
    p = Rdm6300Parser()
    assert p.feed(b"\xff\x00noise" + broken + frame(CARD_B) + b"\x03\x02") == [CARD_B]


noise = st.binary(max_size=40)


@given(st.binary(max_size=300))
def test_parser_never_raises_on_random_bytes(data: bytes) -> None:
    p = Rdm6300Parser()
    for uid in p.feed(data):
        assert len(uid) == 10 and uid == uid.upper()
    assert len(p._buf) < 14  # it holds at most one incomplete frame


@settings(max_examples=200)
@given(st.lists(st.tuples(noise, st.sampled_from([CARD_A, CARD_B, CARD_C, "0000000000"])),
                max_size=6),
       noise, st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=10))
def test_parser_finds_every_good_frame_in_noise(parts: list[tuple[bytes, str]], tail: bytes,
                                                cuts: list[int]) -> None:
    stream = b"".join(n + frame(uid) for n, uid in parts) + tail
    p = Rdm6300Parser()
    got: list[str] = []
    pos, i = 0, 0
    while pos < len(stream):  # fed in arbitrary chunks, as reads return them
        size = cuts[i % len(cuts)]
        got += p.feed(stream[pos:pos + size])
        pos, i = pos + size, i + 1
    # Noise may by chance hold a valid frame of its own; the good ones must all be there,
    # in order.
    it = iter(got)
    assert all(uid in it for _, uid in parts), (got, parts)


# -- settings ---------------------------------------------------------------------------------

def test_check_config_accepts_defaults_and_names_bad_keys(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB0"
    port.touch()
    SerialRfidReader.check_config({"port": str(port)})
    reader = SerialRfidReader.from_config({"port": str(port)}, clock=ManualClock())
    assert (reader.settings.baudrate, reader.settings.protocol, reader.settings.repeat_s,
            reader.settings.id_token_type) == (9600, "rdm6300", 2.0, "Local")
    bad: list[tuple[dict[str, Any], str]] = [
        ({}, "port"),
        ({"port": str(tmp_path / "nope")}, "port"),
        ({"port": str(port), "baudrate": "9600"}, "baudrate"),
        ({"port": str(port), "baudrate": True}, "baudrate"),
        ({"port": str(port), "protocol": "pn999"}, "protocol"),
        ({"port": str(port), "repeat_s": -1}, "repeat_s"),
        ({"port": str(port), "reopen_s": 0}, "reopen_s"),
        ({"port": str(port), "id_token_type": "Mifare"}, "id_token_type"),
        ({"port": str(port), "speed": 9600}, "speed"),
    ]
    for settings_, key in bad:
        with pytest.raises(HalConfigError) as err:
            SerialRfidReader.check_config(settings_)
        assert err.value.key == key, settings_


def test_registry_finds_the_driver(tmp_path: Path) -> None:
    port = tmp_path / "ttyS1"
    port.touch()
    assert backend("reader", "serial_rfid") is SerialRfidReader
    spec = DriverSpec(role="reader", driver="serial_rfid", settings={"port": str(port)})
    check(spec)
    assert isinstance(create(spec, ManualClock()), SerialRfidReader)


# -- the driver on a pseudo-terminal ----------------------------------------------------------

class Pty:
    """A pseudo-terminal whose slave the driver opens through a symlink, like a udev name."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.ttyname(self.slave))

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def vanish(self) -> None:
        os.close(self.master)
        os.close(self.slave)


async def until(cond: Callable[[], bool], what: str) -> None:
    """Wait for the reader thread's real I/O; bounded, never a wait for time to pass."""
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def next_token(tokens: AsyncIterator[PresentedToken]) -> PresentedToken:
    return await asyncio.wait_for(tokens.__anext__(), 5)


def run_reader(tmp_path: Path, body: Callable[..., Any], **settings_: Any) -> None:
    async def main() -> None:
        pty = Pty(tmp_path / "ttyRFID")
        clock = ManualClock()
        reader = SerialRfidReader.from_config({"port": str(pty.link), **settings_}, clock=clock)
        await reader.start()
        try:
            await until(lambda: reader.port_open, "the port to open")
            await body(reader, pty, clock, reader.tokens())
        finally:
            await reader.stop()
            for fd in (pty.master, pty.slave):
                try:
                    os.close(fd)
                except OSError:
                    pass
    asyncio.run(main())


def test_reads_good_frames_through_noise_and_broken_ones(tmp_path: Path) -> None:
    async def body(reader: SerialRfidReader, pty: Pty, clock: ManualClock, tokens: Any) -> None:
        pty.write(b"\x00\xffjunk" + frame(CARD_A))
        assert await next_token(tokens) == PresentedToken(CARD_A, "Local")
        pty.write(frame(CARD_A, checksum=0x55) + frame(CARD_B)[:9] + b"\r\n\x02\x02"
                  + frame(CARD_B)[:-1] + b"\x7f")
        pty.write(frame(CARD_C)[:5])   # a frame arriving in pieces
        await asyncio.sleep(0.05)
        pty.write(frame(CARD_C)[5:])
        assert await next_token(tokens) == PresentedToken(CARD_C, "Local")
        assert reader.fault is None
    run_reader(tmp_path, body)


def test_published_frames_come_through_the_port(tmp_path: Path) -> None:
    async def body(reader: SerialRfidReader, pty: Pty, clock: ManualClock, tokens: Any) -> None:
        for raw, uid in PUBLISHED:
            pty.write(raw)
            assert await next_token(tokens) == PresentedToken(uid, "Local")
    run_reader(tmp_path, body)


def test_held_card_is_reported_once_until_away_for_the_window(tmp_path: Path) -> None:
    async def body(reader: SerialRfidReader, pty: Pty, clock: ManualClock, tokens: Any) -> None:
        pty.write(frame(CARD_A) * 3)             # the module repeats while the card is held
        assert (await next_token(tokens)).uid == CARD_A
        pty.write(frame(CARD_B))                 # a marker: the repeats above were dropped
        assert (await next_token(tokens)).uid == CARD_B

        # Each sighting below is followed by a new marker card, so it is known to have
        # been handled before the clock moves on.
        await clock.advance(1.5)
        pty.write(frame(CARD_A) + frame(CARD_C))  # still held: 1.5 s after the last sighting
        assert (await next_token(tokens)).uid == CARD_C
        await clock.advance(1.5)
        pty.write(frame(CARD_A) + frame(CARD_D))  # 3 s after the first, 1.5 after the last
        assert (await next_token(tokens)).uid == CARD_D

        await clock.advance(2.0)                 # removed for the whole window
        pty.write(frame(CARD_A))
        assert (await next_token(tokens)).uid == CARD_A
    run_reader(tmp_path, body, repeat_s=2.0)


def test_port_vanishes_is_a_fault_and_it_reopens(tmp_path: Path) -> None:
    async def body(reader: SerialRfidReader, pty: Pty, clock: ManualClock, tokens: Any) -> None:
        changes: list[str | None] = []
        reader.subscribe(lambda: changes.append(reader.fault))
        pty.vanish()                             # the USB reader is unplugged
        await until(lambda: reader.fault is not None, "the fault")
        assert "RFID reader" in reader.fault and not reader.port_open
        await clock.advance(5.0)                 # one reopen attempt: still gone
        await until(lambda: reader.fault is not None and "cannot open" in reader.fault,
                    "the failed reopen")

        again = Pty(pty.link)                    # plugged back in, same udev name
        pty.master, pty.slave = again.master, again.slave
        await clock.advance(5.0)
        await until(lambda: reader.port_open, "the port to reopen")
        assert reader.fault is None
        again.write(frame(CARD_B))
        assert (await next_token(tokens)).uid == CARD_B
        assert changes[0] is not None and changes[-1] is None
    run_reader(tmp_path, body, reopen_s=5.0)


def test_missing_port_is_a_fault_not_an_exception(tmp_path: Path) -> None:
    async def main() -> None:
        clock = ManualClock()
        reader = SerialRfidReader.from_config({"port": str(tmp_path / "ttyNone")}, clock=clock)
        await reader.start()
        await until(lambda: reader.fault is not None, "the fault")
        assert "cannot open" in reader.fault
        waiting = asyncio.ensure_future(reader.tokens().__anext__())
        await clock.advance(30)
        assert not waiting.done()                # tokens() just has nothing to give
        waiting.cancel()
        await reader.stop()
    asyncio.run(main())
