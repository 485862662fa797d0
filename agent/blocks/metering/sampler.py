"""The meter values of one transaction (J02), for the transaction block. Sans-I/O.

The transaction block owns the timers and the TransactionEvents; this class only says
when a sample is due and builds the meterValue elements, from the SampledDataCtrlr and
AlignedDataCtrlr variables, read afresh at each call (a CSMS change applies from the
next sample on). How to drive it:

    sampler = TxMeterSampler(model, started_at=now, phases=3)
    started.meterValue = [sampler.begin(reading)]           # if not None
    loop:
        due = sampler.next_due()                            # None: nothing scheduled
        sleep until due (or an event)
        value = sampler.sample(reading, clock.now())
        if value: send TransactionEvent Updated (triggerReason MeterValuePeriodic)
    ended.meterValue = sampler.end(reading, clock.now())    # [] -> leave meterValue out
    store sampler.snapshot() with the transaction; TxMeterSampler.restore() after restart

What each call yields:
- begin(): the Started event's value: TxStartedMeasurands, context Transaction.Begin,
  stamped with the start (the register at the start; J02.FR.10).
- sample(): the Updated event's value, TxUpdatedMeasurands, context Sample.Periodic,
  due every TxUpdatedInterval seconds counted from the transaction start (J02); None
  when no Updated value is due. It also records, for the Ended event:
    - TxEndedMeasurands every TxEndedInterval seconds from the start (Sample.Periodic),
    - AlignedDataCtrlr.TxEndedMeasurands at each AlignedDataCtrlr.TxEndedInterval
      clock-aligned instant (Sample.Clock, stamped with the instant; an instant
      served more than LATE_LIMIT_S late is skipped rather than stamped falsely).
  Sample.Periodic values are stamped with their scheduled instant when the reading
  belongs to it (_stamp: no poll jitter in the intervals), else with the reading's time.
- end(): the Ended event's meterValue list, in time order: the TxEndedMeasurands at
  the start (Transaction.Begin), the recorded samples, and at the end
  (Transaction.End). With both Ended intervals 0 that is just start and end.
  Elements with the same timestamp are merged into one (J02.FR.10: only Ended may
  span several timestamps).
- value(): an unscheduled value (Trigger, Interruption.Begin/End, Other) with the
  TxUpdatedMeasurands, for TriggerMessage or a power interruption.

Energy registers never go backwards within the transaction (register.py): every element
built here passes through the transaction's RegisterFloor, a register below what was
already reported carries the reported value instead, and the Transaction.End element
gets the floor for a register the meter could not give. take_held() hands what was held
to the transaction block, which reports it (FiscalMetering Problem).

SampledDataCtrlr.Enabled false stops the sampled values (Started/Updated/Ended Begin,
periodic and End); AlignedDataCtrlr.Enabled false stops the clock-aligned ones.
Clock-aligned values for Updated events (Sample.Clock, triggerReason MeterValueClock)
come from AlignedMeterValues, which has the station-wide aligned timer.

Bounded Ended list: each recorded series (periodic, clock-aligned) keeps at most
`max_ended_samples` elements. When a series would exceed it, every other element is
dropped and from then on only every second instant is recorded (the stride doubles),
so the kept samples stay evenly spaced across the whole session however long it runs:
a day at TxEndedInterval 60 s and cap 48 keeps one sample every 32 minutes. The list
therefore has at most 2 * max_ended_samples + 2 elements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from agent.blocks.metering.register import HeldRegister, RegisterFloor
from agent.blocks.metering.timing import (LATE_LIMIT_S, latest_aligned, next_aligned,
                                          next_from_start)
from agent.blocks.metering.values import Extras, meter_value
from agent.clock import format_datetime, parse_datetime
from agent.model.device_model import DeviceModel
from hal.api import MeterReading

MeterValue = dict[str, Any]


@dataclass(frozen=True)
class MeteringSettings:
    """The J variables a transaction's sampling depends on, read at one moment."""

    sampled_enabled: bool = True
    started_measurands: tuple[str, ...] = ()
    updated_measurands: tuple[str, ...] = ()
    updated_interval: int = 0
    ended_measurands: tuple[str, ...] = ()
    ended_interval: int = 0
    aligned_enabled: bool = True
    aligned_ended_measurands: tuple[str, ...] = ()
    aligned_ended_interval: int = 0

    @classmethod
    def from_model(cls, model: DeviceModel) -> "MeteringSettings":
        def get(read: Callable[..., Any], component: str, variable: str, default: Any) -> Any:
            try:
                return read(component, variable)
            except (KeyError, ValueError):
                return default   # a station without that variable: feature off

        sampled, aligned = "SampledDataCtrlr", "AlignedDataCtrlr"
        return cls(
            sampled_enabled=get(model.get_bool, sampled, "Enabled", False),
            started_measurands=tuple(get(model.get_list, sampled, "TxStartedMeasurands", ())),
            updated_measurands=tuple(get(model.get_list, sampled, "TxUpdatedMeasurands", ())),
            updated_interval=get(model.get_int, sampled, "TxUpdatedInterval", 0),
            ended_measurands=tuple(get(model.get_list, sampled, "TxEndedMeasurands", ())),
            ended_interval=get(model.get_int, sampled, "TxEndedInterval", 0),
            aligned_enabled=get(model.get_bool, aligned, "Enabled", False),
            aligned_ended_measurands=tuple(get(model.get_list, aligned, "TxEndedMeasurands", ())),
            aligned_ended_interval=get(model.get_int, aligned, "TxEndedInterval", 0),
        )


@dataclass
class _Series:
    """Samples recorded for the Ended event at one schedule, thinned to a cap."""

    served: datetime                  # the last instant handled (recorded or not)
    count: int = 0                    # instants handled so far
    stride: int = 1                   # record only instants whose count % stride == 0
    items: list[tuple[int, MeterValue]] = field(default_factory=list)

    def handle(self, instant: datetime, build: Callable[[], MeterValue | None],
               cap: int) -> None:
        self.served = instant
        self.count += 1
        if self.count % self.stride:
            return
        item = build()
        if item is None:
            return
        self.items.append((self.count, item))
        while len(self.items) > cap:
            self.stride *= 2
            self.items = [(n, v) for n, v in self.items if n % self.stride == 0]

    def to_json(self) -> dict[str, Any]:
        return {"served": format_datetime(self.served), "count": self.count,
                "stride": self.stride, "items": [[n, v] for n, v in self.items]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "_Series":
        return cls(parse_datetime(data["served"]), int(data["count"]), int(data["stride"]),
                   [(int(n), v) for n, v in data["items"]])


class TxMeterSampler:
    def __init__(self, model: DeviceModel, *, started_at: datetime, phases: int,
                 location: str = "Outlet", max_ended_samples: int = 48) -> None:
        if max_ended_samples < 1:
            raise ValueError("max_ended_samples must be at least 1")
        self._model = model
        self.started_at = started_at
        self.phases = phases
        self.location = location
        self.max_ended_samples = max_ended_samples
        self._updated_served = started_at
        self._periodic = _Series(started_at)
        self._clock = _Series(started_at)
        self._begin: MeterValue | None = None
        self.floor = RegisterFloor()
        self._held: list[HeldRegister] = []

    def settings(self) -> MeteringSettings:
        return MeteringSettings.from_model(self._model)

    # -- the transaction's milestones ----------------------------------------------------

    def begin(self, reading: MeterReading | None,
              extras: Extras | None = None) -> MeterValue | None:
        """The Started event's meterValue element (None: leave meterValue out); also
        records the Ended event's Transaction.Begin element."""
        s = self.settings()
        if reading is None or not s.sampled_enabled:
            return None
        # Stamped with the start, like the Started event: the value stands for the
        # register at the start. The latest reading may be older (a meter read only when
        # something changes, as the mock's is while idle; a reading taken before the
        # CSMS set the clock at boot), which would put the Started event's value outside
        # its sampling interval (J02.FR.10, errata 2.9.2). A meter that keeps polling
        # while energy flows (EnergyTransfer start point) gives one at most a poll old.
        at = max(reading.timestamp, self.started_at)
        self._begin = self._build(reading, s.ended_measurands, "Transaction.Begin", extras,
                                  timestamp=at)
        return self._build(reading, s.started_measurands, "Transaction.Begin", extras,
                           timestamp=at)

    def end(self, reading: MeterReading | None, now: datetime | None = None,
            extras: Extras | None = None) -> list[MeterValue]:
        """The Ended event's meterValue list ([]: leave meterValue out). Records any
        Ended sample still due at `now` (default: the reading's time) first."""
        when = now or (reading.timestamp if reading is not None else None)
        if when is not None:
            self.sample(reading, when, extras, updated=False)
        s = self.settings()
        final = None
        if s.sampled_enabled:
            if reading is not None:
                final = self._build(reading, s.ended_measurands, "Transaction.End", extras)
            # Billing needs the end register: what was reported stands in for one the
            # meter could not give (never 0 Wh, never nothing).
            final, held = self.floor.fill(final, s.ended_measurands, "Transaction.End",
                                          when or self.started_at)
            self._held.extend(held)
        return self.ended_values(final)

    def ended_values(self, final: MeterValue | None = None) -> list[MeterValue]:
        """The Ended list as recorded so far, with `final` (the Transaction.End
        element) last; merged by timestamp, in time order."""
        middle = [v for _, v in self._periodic.items] + [v for _, v in self._clock.items]
        middle.sort(key=lambda v: v["timestamp"])   # fixed-width UTC: text order is time order
        ordered = ([self._begin] if self._begin else []) + middle + ([final] if final else [])
        merged: list[MeterValue] = []
        for value in ordered:
            if merged and merged[-1]["timestamp"] == value["timestamp"]:
                merged[-1] = {"timestamp": value["timestamp"],
                              "sampledValue": merged[-1]["sampledValue"] + value["sampledValue"]}
            else:
                merged.append(value)
        return merged

    # -- the schedule --------------------------------------------------------------------

    def next_due(self) -> datetime | None:
        """When sample() has something to do next; None when nothing is scheduled."""
        s = self.settings()
        due: list[datetime] = []
        if s.sampled_enabled and s.updated_interval > 0 and s.updated_measurands:
            due.append(next_from_start(self.started_at, s.updated_interval,
                                       self._updated_served))
        if s.sampled_enabled and s.ended_interval > 0 and s.ended_measurands:
            due.append(next_from_start(self.started_at, s.ended_interval,
                                       self._periodic.served))
        if s.aligned_enabled and s.aligned_ended_interval > 0 and s.aligned_ended_measurands:
            due.append(next_aligned(self._clock.served, s.aligned_ended_interval))
        return min(due, default=None)

    def sample(self, reading: MeterReading | None, now: datetime,
               extras: Extras | None = None, *, updated: bool = True) -> MeterValue | None:
        """Handle whatever is due at `now`: returns the Updated event's value when one is
        due (None otherwise) and records due Ended samples. Instants missed in between
        (the caller was late) are skipped, not caught up. A None reading (meter not
        answering) still moves the schedule on. `updated` False: no Updated value is
        wanted (the transaction ends), only the Ended samples."""
        s = self.settings()
        value = None
        if s.sampled_enabled and s.updated_interval > 0 and s.updated_measurands:
            if next_from_start(self.started_at, s.updated_interval,
                               self._updated_served) <= now:
                self._updated_served = self._latest_from_start(s.updated_interval, now)
                if reading is not None and updated:
                    value = self._build(reading, s.updated_measurands, "Sample.Periodic",
                                        extras, self._stamp(reading, self._updated_served,
                                                            s.updated_interval, now))
        if s.sampled_enabled and s.ended_interval > 0 and s.ended_measurands:
            if next_from_start(self.started_at, s.ended_interval, self._periodic.served) <= now:
                instant = self._latest_from_start(s.ended_interval, now)
                self._periodic.handle(
                    instant,
                    lambda: None if reading is None else self._build(
                        reading, s.ended_measurands, "Sample.Periodic", extras,
                        self._stamp(reading, instant, s.ended_interval, now)),
                    self.max_ended_samples)
        interval = s.aligned_ended_interval
        if s.aligned_enabled and interval > 0 and s.aligned_ended_measurands:
            if next_aligned(self._clock.served, interval) <= now:
                instant = latest_aligned(now, interval)
                late = (now - instant).total_seconds() > min(interval, LATE_LIMIT_S)
                self._clock.handle(
                    instant,
                    lambda: None if reading is None or late else self._build(
                        reading, s.aligned_ended_measurands, "Sample.Clock", extras,
                        timestamp=instant),
                    self.max_ended_samples)
        return value

    def value(self, reading: MeterReading | None, context: str,
              extras: Extras | None = None) -> MeterValue | None:
        """An unscheduled value (Trigger, Interruption.Begin/End, Other) with the
        TxUpdatedMeasurands; it does not move the schedule."""
        s = self.settings()
        if reading is None or not s.sampled_enabled:
            return None
        return self._build(reading, s.updated_measurands, context, extras)

    def hold(self, value: MeterValue | None) -> MeterValue | None:
        """A value built elsewhere for this transaction (the clock-aligned one of
        AlignedMeterValues), passed through the register floor like the values built
        here; it does not move the schedule."""
        value, held = self.floor.hold(value)
        self._held.extend(held)
        return value

    def take_held(self) -> list[HeldRegister]:
        """The register values held since the last call (for the problem report)."""
        held, self._held = self._held, []
        return held

    # -- persistence -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to carry on after a restart, as JSON-able data. Saved with
        each event, so the floor after a restart is what was reported before it."""
        return {"started_at": format_datetime(self.started_at), "phases": self.phases,
                "location": self.location, "max_ended_samples": self.max_ended_samples,
                "updated_served": format_datetime(self._updated_served),
                "begin": self._begin, "periodic": self._periodic.to_json(),
                "clock": self._clock.to_json(), "floor": self.floor.to_json()}

    @classmethod
    def restore(cls, model: DeviceModel, data: dict[str, Any]) -> "TxMeterSampler":
        sampler = cls(model, started_at=parse_datetime(data["started_at"]),
                      phases=int(data["phases"]), location=data["location"],
                      max_ended_samples=int(data["max_ended_samples"]))
        sampler._updated_served = parse_datetime(data["updated_served"])
        sampler._begin = data["begin"]
        sampler._periodic = _Series.from_json(data["periodic"])
        sampler._clock = _Series.from_json(data["clock"])
        if "floor" in data:
            sampler.floor = RegisterFloor.from_json(data["floor"])
        else:   # saved by a version without floors: what it recorded is the best known
            sampler.floor = RegisterFloor.of(sampler.ended_values())
        return sampler

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _stamp(reading: MeterReading, instant: datetime, interval_s: int,
               now: datetime) -> datetime | None:
        """The timestamp of a Sample.Periodic value: its scheduled instant, when the
        reading belongs to it (taken within the interval before it, or since) and the
        sample is served on time; else None, the reading's own time. A meter polled every
        second or so would otherwise put its poll jitter into the intervals between the
        values, which must equal the configured interval (TC_J_09 / TC_J_10 post
        scenario validations), as the clock-aligned ones are stamped with their instant."""
        late = (now - instant).total_seconds() > min(interval_s, LATE_LIMIT_S)
        if late or reading.timestamp <= instant - timedelta(seconds=interval_s):
            return None
        return instant

    def _latest_from_start(self, interval_s: int, now: datetime) -> datetime:
        step = timedelta(seconds=interval_s)
        return self.started_at + step * ((now - self.started_at) // step)

    def _build(self, reading: MeterReading, measurands: tuple[str, ...], context: str,
               extras: Extras | None, timestamp: datetime | None = None) -> MeterValue | None:
        e = extras or Extras()
        value = meter_value(reading, measurands, context, phases=self.phases,
                            location=self.location, timestamp=timestamp,
                            offered_current_a=e.offered_current_a,
                            offered_power_w=e.offered_power_w, soc_percent=e.soc_percent)
        # Every element of the transaction passes the floor: none goes backwards.
        value, held = self.floor.hold(value)
        self._held.extend(held)
        return value
