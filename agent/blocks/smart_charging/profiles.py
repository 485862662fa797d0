"""Charging profiles as the station keeps them (block K): the rules a new profile must pass
(K01) and the SQLite table that keeps the installed ones across restarts.

The checks are pure functions of the profile, the target EVSE, the station's limits (the
SmartChargingCtrlr variables, as `Limits`), the time and the profiles already installed,
so the handlers in management.py stay thin and the rules are testable one by one. Each
rejection carries a reasonCode of Part 2 Appendix 5 and an additionalInfo for the
operator. Requirement ids are those of OCPP 2.0.1 edition 2; where the specification
leaves the station's answer open, the choice is written next to the check.

Persistence: one row per profile, keyed by its id (ids are unique on the station:
K01.FR.05 replaces by id wherever the old one was installed). The profile is kept as the
JSON the CSMS sent, so GetChargingProfiles reports exactly what was set (customData
included); the columns beside it exist to select rows without parsing JSON. `seq` is the
order of installation (a replacement counts as a new installation).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Collection, ContextManager, Iterable, Iterator

from agent.blocks.smart_charging.model import (ABSOLUTE, EXTERNAL, RECURRING, RELATIVE,
                                               STATION_MAX, TX, TX_DEFAULT, ChargingProfile,
                                               Installed)
from agent.model.types import Component, Variable
from agent.store import Store

log = logging.getLogger(__name__)

CTRLR = "SmartChargingCtrlr"
ENTRIES = Variable("Entries", "ChargingProfiles")
# ChargingLimitSourceEnumType: who installed a profile. Everything the CSMS sets is CSO;
# a local energy manager would install ChargingStationExternalConstraints as EMS/Other.
CSO = "CSO"
SOURCES = ("EMS", "Other", "SO", "CSO")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS charging_profiles (
    id             INTEGER PRIMARY KEY,   -- ChargingProfileType.id, unique on the station
    evse_id        INTEGER NOT NULL,      -- 0: the Charging Station (grid connection)
    purpose        TEXT    NOT NULL,      -- chargingProfilePurpose
    stack_level    INTEGER NOT NULL,
    transaction_id TEXT,                  -- TxProfile only
    source         TEXT    NOT NULL,      -- chargingLimitSource: CSO for the CSMS
    profile        TEXT    NOT NULL,      -- ChargingProfileType as received, compact JSON
    seq            INTEGER NOT NULL       -- order of installation
);
CREATE INDEX IF NOT EXISTS charging_profiles_tx ON charging_profiles (transaction_id);
"""


@dataclass(frozen=True)
class Rejection:
    """Why a profile is refused: SetChargingProfileResponse status Rejected with this."""
    reason: str      # reasonCode, Appendix 5 (at most 20 characters)
    info: str        # additionalInfo (at most 512 characters)

    def status_info(self) -> dict[str, str]:
        return {"reasonCode": self.reason, "additionalInfo": self.info[:512]}


@dataclass(frozen=True)
class Limits:
    """What the station accepts, from the SmartChargingCtrlr variables."""
    max_stack_level: int                 # ProfileStackLevel
    max_periods: int                     # PeriodsPerSchedule
    rate_units: frozenset[str]           # RateUnit
    phase_switching: bool = False        # ACPhaseSwitchingSupported
    max_entries: int | None = None       # Entries maxLimit; None: no limit

    @classmethod
    def from_model(cls, model: Any) -> "Limits":
        def optional(read: Callable[[], Any], default: Any) -> Any:
            try:
                return read()
            except (KeyError, ValueError):
                return default
        try:
            entries = model.definition(Component(CTRLR), ENTRIES).characteristics.max_limit
        except KeyError:
            entries = None
        return cls(
            max_stack_level=optional(lambda: model.get_int(CTRLR, "ProfileStackLevel"), 0),
            max_periods=optional(lambda: model.get_int(CTRLR, "PeriodsPerSchedule"), 1),
            rate_units=frozenset(optional(lambda: model.get_list(CTRLR, "RateUnit"), ["A"])),
            phase_switching=optional(
                lambda: model.get_bool(CTRLR, "ACPhaseSwitchingSupported"), False),
            max_entries=int(entries) if entries is not None else None)


@dataclass(frozen=True)
class Stored:
    """One installed profile as the store holds it."""
    evse_id: int
    profile: ChargingProfile
    data: dict[str, Any]    # the ChargingProfileType as received
    source: str
    seq: int

    @property
    def installed(self) -> Installed:
        return Installed(self.evse_id, self.profile)


# -- the rules of K01 for one profile -------------------------------------------------------

def check_profile(profile: ChargingProfile, evse_id: int, *, limits: Limits, now: datetime,
                  evse_ids: Collection[int],
                  transaction_on: Callable[[int], str | None],
                  dc_evse_ids: Collection[int] = ()) -> Rejection | None:
    """The first rule this profile, set on `evse_id`, breaks; None if it may be installed.
    Only what the profile itself says: see `check_conflicts` for installed ones."""
    return (_check_target(profile, evse_id, evse_ids)
            or _check_transaction(profile, evse_id, transaction_on)
            or _check_kind(profile)
            or _check_dc(profile, evse_id, dc_evse_ids)
            or _check_schedules(profile, limits)
            or _check_stack_level(profile, limits)
            or _check_validity(profile, now))


def _check_target(profile: ChargingProfile, evse_id: int,
                  evse_ids: Collection[int]) -> Rejection | None:
    if evse_id != 0 and evse_id not in evse_ids:
        # K01.FR.28
        return Rejection("UnknownEvse", f"this station has no EVSE {evse_id}")
    purpose = profile.purpose
    if purpose == EXTERNAL:
        # K01.FR.22: the CSMS does not set these; the station reports limits an external
        # system set this way.
        return Rejection("InvalidProfile", "ChargingStationExternalConstraints are set only "
                                           "by an external system, never by the CSMS")
    if purpose == STATION_MAX and evse_id != 0:
        # The evseId description of SetChargingProfileRequest: a station-wide limit.
        return Rejection("InvalidProfile",
                         f"a ChargingStationMaxProfile applies to evseId 0, not {evse_id}")
    if purpose == TX and evse_id == 0:
        # K01.FR.16
        return Rejection("InvalidProfile", "a TxProfile needs the EVSE of its transaction, "
                                           "not evseId 0")
    if purpose == STATION_MAX and profile.kind == RELATIVE:
        # K01.FR.38
        return Rejection("InvalidProfile", "a ChargingStationMaxProfile cannot be Relative")
    return None


def _check_transaction(profile: ChargingProfile, evse_id: int,
                       transaction_on: Callable[[int], str | None]) -> Rejection | None:
    if profile.purpose != TX:
        if profile.transaction_id is not None:
            # ChargingProfileType.transactionId: "SHALL only be included if
            # ChargingProfilePurpose is set to TxProfile". Refused rather than ignored:
            # the CSMS probably meant a TxProfile.
            return Rejection("InvalidProfile",
                             f"transactionId is only for a TxProfile, not a {profile.purpose}")
        return None
    if profile.transaction_id is None:
        # K01.FR.03
        return Rejection("TxNotFound", "a TxProfile needs the transactionId it is for")
    running = transaction_on(evse_id)
    if running is None:
        # K01.FR.09
        return Rejection("TxNotFound", f"no transaction runs on EVSE {evse_id}")
    if running != profile.transaction_id:
        # K01.FR.33
        return Rejection("TxNotFound", f"transaction {profile.transaction_id} does not run "
                                       f"on EVSE {evse_id}")
    return None


def _check_kind(profile: ChargingProfile) -> Rejection | None:
    if profile.kind == RECURRING and profile.recurrency is None:
        return Rejection("InvalidProfile", "a Recurring profile needs a recurrencyKind")
    if profile.kind != RECURRING and profile.recurrency is not None:
        return Rejection("InvalidProfile",
                         f"recurrencyKind is only for a Recurring profile, not {profile.kind}")
    if len(profile.schedules) > 1:
        # K01.FR.34: more than one chargingSchedule only with ISO 15118 charging needs,
        # which this station does not take part in.
        return Rejection("InvalidProfile", "only one chargingSchedule is supported "
                                           "(more are for ISO 15118 only)")
    for schedule in profile.schedules:
        if profile.kind in (ABSOLUTE, RECURRING) and schedule.start_schedule is None:
            # K01.FR.40
            return Rejection("InvalidSchedule",
                             f"an {profile.kind} profile needs a startSchedule")
        if profile.kind == RELATIVE and schedule.start_schedule is not None:
            # K01.FR.41; errata 2023-12 on ChargingProfileKind Relative: "No value for
            # startSchedule should be supplied".
            return Rejection("InvalidSchedule", "a Relative profile has no startSchedule")
    return None


def _check_dc(profile: ChargingProfile, evse_id: int,
              dc_evse_ids: Collection[int]) -> Rejection | None:
    if evse_id not in dc_evse_ids:
        return None
    for schedule in profile.schedules:
        for period in schedule.periods:
            if period.number_phases is not None or period.phase_to_use is not None:
                # K01.FR.44: a DC output has no phases to count or choose (rejected, as
                # EVerest does, rather than silently ignored)
                return Rejection("InvalidSchedule", f"period at {period.start_period} s: "
                                                    f"EVSE {evse_id} is DC; numberPhases "
                                                    f"and phaseToUse must be absent")
    return None


def _check_schedules(profile: ChargingProfile, limits: Limits) -> Rejection | None:
    for schedule in profile.schedules:
        if schedule.rate_unit not in limits.rate_units:
            # K01.FR.26
            units = ",".join(sorted(limits.rate_units))
            return Rejection("UnsupportedRateUnit", f"chargingRateUnit {schedule.rate_unit} is "
                                                    f"not supported (SmartChargingCtrlr.RateUnit:"
                                                    f" {units})")
        periods = schedule.periods
        if len(periods) > limits.max_periods:
            return Rejection("InvalidSchedule",
                             f"{len(periods)} periods, more than SmartChargingCtrlr."
                             f"PeriodsPerSchedule ({limits.max_periods})")
        if periods[0].start_period != 0:
            # K01.FR.31
            return Rejection("InvalidSchedule", "the first period must start at 0")
        for before, after in zip(periods, periods[1:]):
            if after.start_period <= before.start_period:
                # K01.FR.35
                return Rejection("InvalidSchedule", "startPeriod must increase from period "
                                                    "to period")
        if schedule.duration is not None and schedule.duration < 0:
            return Rejection("InvalidSchedule", "duration cannot be negative")
        if schedule.min_charging_rate is not None and schedule.min_charging_rate < 0:
            return Rejection("InvalidSchedule", "minChargingRate cannot be negative")
        for period in periods:
            found = _check_period(period.start_period, period.limit, period.number_phases,
                                  period.phase_to_use, limits)
            if found is not None:
                return found
    return None


def _check_period(start: int, limit: float, phases: int | None, phase_to_use: int | None,
                  limits: Limits) -> Rejection | None:
    where = f"period at {start} s"
    if limit < 0:
        return Rejection("InvalidSchedule", f"{where}: limit cannot be negative")
    if phases is not None and not 1 <= phases <= 3:
        return Rejection("InvalidSchedule", f"{where}: numberPhases must be 1, 2 or 3")
    if phase_to_use is not None:
        if phases != 1:
            # K01.FR.19 (numberPhases absent means 3)
            return Rejection("InvalidSchedule", f"{where}: phaseToUse needs numberPhases 1")
        if not 1 <= phase_to_use <= 3:
            return Rejection("InvalidSchedule", f"{where}: phaseToUse must be 1, 2 or 3")
        if not limits.phase_switching:
            # K01.FR.20
            return Rejection("InvalidSchedule", f"{where}: phaseToUse needs SmartChargingCtrlr."
                                                f"ACPhaseSwitchingSupported")
    return None


def _check_stack_level(profile: ChargingProfile, limits: Limits) -> Rejection | None:
    if not 0 <= profile.stack_level <= limits.max_stack_level:
        return Rejection("InvalidStackLevel",
                         f"stackLevel {profile.stack_level} is outside 0..{limits.max_stack_level}"
                         f" (SmartChargingCtrlr.ProfileStackLevel)")
    return None


def _check_validity(profile: ChargingProfile, now: datetime) -> Rejection | None:
    valid_from, valid_to = profile.valid_from, profile.valid_to
    if valid_to is not None:
        if valid_from is not None and valid_to <= valid_from:
            return Rejection("InvalidProfile", "validTo must be after validFrom")
        if valid_to <= now:
            return Rejection("InvalidProfile", "validTo is in the past")
    return None


# -- the rules against installed profiles ---------------------------------------------------

def expired(profile: ChargingProfile, now: datetime) -> bool:
    """Past its validTo: it can never apply again."""
    return profile.valid_to is not None and profile.valid_to <= now


def overlaps(a: ChargingProfile, b: ChargingProfile) -> bool:
    """Whether the validity periods of two profiles share a moment. An absent validFrom is
    taken as the distant past (the profile is valid from receipt, which is no later than
    now; a validTo before now is refused or expired), an absent validTo as the end of time."""
    a_from, a_to = a.valid_from, a.valid_to
    b_from, b_to = b.valid_from, b.valid_to
    return ((a_to is None or b_from is None or b_from < a_to)
            and (b_to is None or a_from is None or a_from < b_to))


def same_slot(profile: ChargingProfile, evse_id: int, other: Stored) -> bool:
    """Whether `other` competes with `profile` for one place in the stack: same purpose and
    stackLevel, and
    - TxProfile: the same transaction (K01.FR.39);
    - TxDefaultProfile: the same EVSE, or one on EVSE 0 and the other on an EVSE, since the
      station-wide one applies to every EVSE (K01.FR.52, K01.FR.53);
    - otherwise the same EVSE (K01.FR.06)."""
    theirs = other.profile
    if theirs.purpose != profile.purpose or theirs.stack_level != profile.stack_level:
        return False
    if profile.purpose == TX:
        return theirs.transaction_id == profile.transaction_id
    if profile.purpose == TX_DEFAULT:
        return other.evse_id == evse_id or 0 in (other.evse_id, evse_id)
    return other.evse_id == evse_id


def check_conflicts(profile: ChargingProfile, evse_id: int, installed: Iterable[Stored], *,
                    now: datetime, limits: Limits) -> Rejection | None:
    """Whether `profile` may join the installed ones.

    - The same id replaces the installed profile wherever it is (K01.FR.05), except a
      ChargingStationExternalConstraints, which the CSMS cannot replace (the K01.FR.05
      precondition and its note, errata 2025-06 of 2.1): DuplicateProfile.
    - Another id in the same place of the stack (see `same_slot`) with an overlapping
      validity period: DuplicateProfile, as Appendix 5 defines it. K01.FR.06/.39 only
      forbid the CSMS to send such a profile; OCPP 1.6 replaced the old one instead, but in
      2.0.1 the replaced one would be a profile the CSMS still believes installed, so the
      new one is refused and the CSMS decides (clear, or reuse the id).
      K01.FR.39 and .52/.53 do not mention validity; the overlap test applies to them too,
      since two profiles that are never valid at the same time do not compete.
    - SmartChargingCtrlr.Entries maxLimit installed already and none replaced:
      TooManyElements.
    """
    current = [s for s in installed if not expired(s.profile, now)]
    replaced = next((s for s in current if s.profile.id == profile.id), None)
    if replaced is not None and replaced.profile.purpose == EXTERNAL:
        return Rejection("DuplicateProfile", f"id {profile.id} belongs to a ChargingStation"
                                             f"ExternalConstraints profile, which the CSMS "
                                             f"cannot replace")
    for other in current:
        if other.profile.id != profile.id and same_slot(profile, evse_id, other) \
                and overlaps(profile, other.profile):
            where = (f"transaction {profile.transaction_id}" if profile.purpose == TX
                     else f"EVSE {other.evse_id}")
            return Rejection("DuplicateProfile",
                             f"profile {other.profile.id} ({profile.purpose}, stackLevel "
                             f"{profile.stack_level}, {where}) has an overlapping validity "
                             f"period")
    if replaced is None and limits.max_entries is not None \
            and len(current) >= limits.max_entries:
        return Rejection("TooManyElements", f"{len(current)} profiles installed, the most "
                                            f"this station keeps (SmartChargingCtrlr.Entries)")
    return None


# -- persistence ----------------------------------------------------------------------------

class ProfileStore:
    """The installed profiles in the one SQLite database; every change is one transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store
        store.ensure_schema(_SCHEMA)

    def transaction(self) -> ContextManager[Any]:
        """Group reads and writes into one atomic unit (the store's transaction)."""
        return self._store.transaction()

    def all(self, evse_id: int | None = None) -> list[Stored]:
        """Installed profiles in the order they were installed, of one EVSE or all."""
        sql = "SELECT evse_id, profile, source, seq FROM charging_profiles"
        params: tuple[Any, ...] = ()
        if evse_id is not None:
            sql += " WHERE evse_id = ?"
            params = (evse_id,)
        return list(self._parse(self._store.query(sql + " ORDER BY seq", params)))

    def get(self, profile_id: int) -> Stored | None:
        rows = self._store.query("SELECT evse_id, profile, source, seq FROM charging_profiles "
                                 "WHERE id = ?", (profile_id,))
        found = list(self._parse(rows))
        return found[0] if found else None

    def count(self) -> int:
        return int(self._store.query("SELECT COUNT(*) FROM charging_profiles")[0][0])

    def put(self, evse_id: int, data: dict[str, Any], source: str = CSO) -> None:
        """Install a profile (schema-valid ChargingProfileType), replacing the one with its
        id wherever that was (K01.FR.05)."""
        text = json.dumps(data, separators=(",", ":"))
        with self._store.transaction() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM charging_profiles"
                             ).fetchone()[0]
            db.execute("INSERT OR REPLACE INTO charging_profiles (id, evse_id, purpose, "
                       "stack_level, transaction_id, source, profile, seq) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (int(data["id"]), evse_id, data["chargingProfilePurpose"],
                        int(data["stackLevel"]), data.get("transactionId"), source, text, seq))

    def clear(self, *, profile_id: int | None = None, evse_id: int | None = None,
              purpose: str | None = None, stack_level: int | None = None) -> int:
        """Remove what the CSMS may remove (never ChargingStationExternalConstraints) that
        matches every given criterion; returns how many went."""
        where, params = [f"purpose != '{EXTERNAL}'"], []
        for column, value in (("id", profile_id), ("evse_id", evse_id), ("purpose", purpose),
                              ("stack_level", stack_level)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        return self._delete(" AND ".join(where), params)

    def remove_external(self, profile_id: int) -> int:
        """Remove a ChargingStationExternalConstraints profile (its input was released)."""
        return self._delete("purpose = ? AND id = ?", [EXTERNAL, profile_id])

    def transaction_ended(self, transaction_id: str) -> int:
        """Remove the TxProfiles of this transaction; returns how many."""
        return self._delete("purpose = ? AND transaction_id = ?", [TX, transaction_id])

    def prune(self, running: Iterable[str]) -> int:
        """Remove TxProfiles whose transaction is not among `running`; returns how many."""
        keep = sorted(set(running))
        marks = ", ".join("?" for _ in keep)
        where = f"purpose = ? AND (transaction_id IS NULL OR transaction_id NOT IN ({marks}))" \
            if keep else "purpose = ?"
        return self._delete(where, [TX, *keep])

    def drop_expired(self, now: datetime) -> int:
        """Remove profiles past their validTo (they can never apply again); returns how many."""
        gone = [s.profile.id for s in self.all() if expired(s.profile, now)]
        if not gone:
            return 0
        return self._delete(f"id IN ({', '.join('?' for _ in gone)})", gone)

    def _delete(self, where: str, params: list[Any]) -> int:
        with self._store.transaction() as db:
            return int(db.execute(f"DELETE FROM charging_profiles WHERE {where}",
                                  params).rowcount)

    def _parse(self, rows: Iterable[tuple[Any, ...]]) -> Iterator[Stored]:
        for evse_id, text, source, seq in rows:
            try:
                data = json.loads(text)
                profile = ChargingProfile.from_ocpp(data)
            except (ValueError, KeyError, TypeError) as exc:
                # Written by us after validation, so only a damaged file gets here; one bad
                # row must not take the others (or the daemon) with it.
                log.error("ignoring an unreadable stored charging profile: %s", exc)
                continue
            yield Stored(evse_id, profile, data, source, seq)
