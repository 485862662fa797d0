"""The standardized components and variables this station reports, as data.

Names, data types and units follow OCPP 2.0.1 Part 2 appendices 3 and 4 with the errata
of 2023-12 (ActiveNetworkProfile is an integer; BasicAuthPassword and Identity are
strings of at most 40 and 48 characters; interval units are "s"). Mutability and which
variables exist follow the "Referenced Components and Variables" of Part 2 and Part 4 §8.

supportsMonitoring is false everywhere: the agent implements no variable monitoring
(functional block N), so it must not claim it.

Where the specification gives no default, the value is what a charger maker ships and
the comment says why. The data budget of docs/architecture.md (a month of cellular use within
5 MB) drives the keep-alive and metering defaults.
"""

from __future__ import annotations

from agent.model.types import (FEATURE_AUTH_CACHE, FEATURE_LOCAL_AUTH_LIST,
                               FEATURE_RESERVATION, FEATURE_SMART_CHARGING,
                               AttributeDefinition, AttributeType, Characteristics,
                               Component, DataType, Mutability, StationSpec, Variable,
                               VariableDefinition)

# ConnectorStatusEnumType: what StatusNotification reports, replicated by AvailabilityState.
AVAILABILITY_STATES = ("Available", "Occupied", "Reserved", "Unavailable", "Faulted")
# ConnectorEnumType plus the three extra values of appendix 4 (ConnectorType).
CONNECTOR_TYPES = (
    "cCCS1", "cCCS2", "cG105", "cTesla", "cType1", "cType2", "s309-1P-16A", "s309-1P-32A",
    "s309-3P-16A", "s309-3P-32A", "sBS1361", "sCEE-7-7", "sType2", "sType3",
    "Other1PhMax16A", "Other1PhOver16A", "Other3Ph", "Pan", "wInductive", "wResonant",
    "Undetermined", "Unknown", "cGBT", "cChaoJi", "OppCharge",
)
# TxStartPoint/TxStopPoint events the agent can observe through its HAL: plug state,
# authorization, the power path (plugged in, authorized, locked, no fault), energy flow. No bay sensor (ParkingBayOccupancy) and no
# signed meter data (DataSigned), so those are not offered.
TX_POINTS = ("EVConnected", "Authorized", "PowerPathClosed", "EnergyTransfer")
# Network connection profile slots (B09.FR.06: at least two, so the CSMS can migrate the
# station). Slot 1 is seeded from the [csms] table of the config.
NETWORK_SLOTS = ("1", "2")
# A list with at least one member.
NOT_EMPTY = r".*[^\s,].*"
# Characters of a passwordString (Part 2 §2.1.4 primitive types).
PASSWORD_PATTERN = r"[A-Za-z0-9*\-_=:+|@.]{16,40}"

# Bounds of the interval settings. Every number a CSMS can write has a real range: a
# value far out of it (2^63 s) once passed SetVariables and then overflowed the date
# arithmetic of the next transaction, at every start. These ranges cover what a
# deployment uses with room to spare; the comments at each variable say why.
HOUR_S = 3600
DAY_S = 86400
WEEK_S = 7 * DAY_S
YEAR_S = 365 * DAY_S
# The certificate store's capacity (agent/pki/certstore.py MAX_ENTRIES).
CERTIFICATE_ENTRIES = 24

A = AttributeType
M = Mutability
T = DataType


def _ro(value: object = "", *, constant: bool = False, persistent: bool | None = None,
        type_: AttributeType = A.ACTUAL) -> AttributeDefinition:
    """A read-only attribute: a constant (fixed by config/software) or live state."""
    return AttributeDefinition(type_, M.READ_ONLY, constant if persistent is None else persistent,
                               constant, _text(value))


def _rw(value: object = "", *, type_: AttributeType = A.ACTUAL) -> AttributeDefinition:
    """A configuration setting: writable by the CSMS and kept across restarts."""
    return AttributeDefinition(type_, M.READ_WRITE, True, False, _text(value))


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _Builder:
    def __init__(self) -> None:
        self.items: list[VariableDefinition] = []

    def add(self, component: Component, name: str, data_type: DataType,
            *attributes: AttributeDefinition, instance: str | None = None,
            unit: str | None = None, min_limit: float | None = None,
            max_limit: float | None = None, values: tuple[str, ...] = (),
            reboot_required: bool = False, pattern: str | None = None) -> None:
        self.items.append(VariableDefinition(
            component, Variable(name, instance), tuple(attributes),
            Characteristics(data_type, unit, min_limit, max_limit, tuple(values)),
            reboot_required, pattern))


def standard_definitions(station: StationSpec) -> list[VariableDefinition]:
    b = _Builder()
    _physical(b, station)
    _comm(b, station)
    _security(b, station)
    _device_data(b)
    _clock(b)
    _auth(b, station)
    _tx(b)
    _metering(b, station)
    _optional(b, station)
    return b.items


# --- physical tiers: ChargingStation, EVSE, Connector (Part 1 §4.8 minimum device model)

def _physical(b: _Builder, station: StationSpec) -> None:
    cs = Component("ChargingStation")
    b.add(cs, "AvailabilityState", T.OPTION_LIST, _ro("Available"), values=AVAILABILITY_STATES)
    b.add(cs, "Available", T.BOOLEAN, _ro(True, constant=True))
    b.add(cs, "Model", T.STRING, _ro(station.model, constant=True))
    b.add(cs, "VendorName", T.STRING, _ro(station.vendor, constant=True))
    if station.serial_number:
        b.add(cs, "SerialNumber", T.STRING, _ro(station.serial_number, constant=True))
    # The station is fed with as many phases as its widest EVSE uses (0 = DC only).
    b.add(cs, "SupplyPhases", T.INTEGER,
          _ro(max((e.phases for e in station.evses), default=0), constant=True))
    b.add(cs, "Problem", T.BOOLEAN, _ro(False))
    b.add(cs, "FirmwareVersion", T.STRING, _ro(station.firmware_version, constant=True))
    # L01.FR.07: while a firmware install waits for transactions to end, EVSEs that are
    # free go Unavailable unless this says new sessions may still start.
    b.add(cs, "AllowNewSessionsPendingFirmwareUpdate", T.BOOLEAN, _rw(False))

    for evse in station.evses:
        ev = Component("EVSE", evse=evse.id)
        b.add(ev, "AvailabilityState", T.OPTION_LIST, _ro("Available"), values=AVAILABILITY_STATES)
        b.add(ev, "Available", T.BOOLEAN, _ro(True, constant=True))
        # Required: maxLimit = the most power this EVSE can deliver. Actual is the measured
        # power (set by metering). MaxSet repeats the rating as the configured maximum.
        rated = _text(float(evse.max_power_w))
        b.add(ev, "Power", T.DECIMAL, _ro(0), _ro(rated, constant=True, type_=A.MAX_SET),
              unit="W", max_limit=evse.max_power_w)
        b.add(ev, "SupplyPhases", T.INTEGER, _ro(evse.phases, constant=True))
        b.add(ev, "Problem", T.BOOLEAN, _ro(False))
        # The meter billing reads (appendix 3): Problem while a reading of a running
        # transaction could not be used as read (agent/blocks/metering/register_events.py).
        b.add(Component("FiscalMetering", evse=evse.id), "Problem", T.BOOLEAN, _ro(False))
        for connector_id in range(1, evse.connectors + 1):
            con = Component("Connector", evse=evse.id, connector=connector_id)
            b.add(con, "AvailabilityState", T.OPTION_LIST, _ro("Available"),
                  values=AVAILABILITY_STATES)
            b.add(con, "Available", T.BOOLEAN, _ro(True, constant=True))
            b.add(con, "ConnectorType", T.OPTION_LIST,
                  _ro(evse.effective_connector_type, constant=True), values=CONNECTOR_TYPES)
            b.add(con, "SupplyPhases", T.INTEGER, _ro(evse.phases, constant=True))
            b.add(con, "Problem", T.BOOLEAN, _ro(False))
            if evse.effective_connector_type.startswith("s"):
                # A socket holds a detachable cable with a lock (appendix 3, 3.2.17):
                # Problem is "Locking Failed", what G05 reports (NotifyEvent on it).
                lock = Component("ConnectorPlugRetentionLock", evse=evse.id,
                                 connector=connector_id)
                b.add(lock, "Enabled", T.BOOLEAN, _ro(True, constant=True))
                b.add(lock, "Problem", T.BOOLEAN, _ro(False))


# --- OCPPCommCtrlr (B, Part 4 §8) ---------------------------------------------------

def _comm(b: _Builder, station: StationSpec) -> None:
    c = Component("OCPPCommCtrlr")
    # Slot in use for the current connection (errata: integer). Set by the connection.
    b.add(c, "ActiveNetworkProfile", T.INTEGER, _ro(1), min_limit=1,
          max_limit=len(NETWORK_SLOTS))
    # What agent/transfer speaks for UpdateFirmware and GetLog: http.client and ftplib
    # come with Python. FTPS and SFTP are not offered (SFTP needs a third-party client).
    b.add(c, "FileTransferProtocols", T.MEMBER_LIST, _ro("FTP,HTTP,HTTPS", constant=True),
          values=("FTP", "FTPS", "HTTP", "HTTPS", "SFTP"))
    # Inactivity interval; the CSMS sets its own in BootNotificationResponse (B01.FR.04),
    # so this only counts until the first Accepted boot. One hour: often enough for the
    # clock (Heartbeat is the time source) and for a CSMS that watches OCPP traffic,
    # cheap on cellular (~720 exchanges a month, a few percent of the 5 MB budget);
    # link liveness is the WebSocket ping's job.
    b.add(c, "HeartbeatInterval", T.INTEGER, _rw(3600), unit="s", min_limit=0, max_limit=WEEK_S)
    # MessageTimeout comes with the network connection profile (messageTimeout), so the
    # variable itself is read-only. 30 s covers a slow cellular round trip with TLS.
    b.add(c, "MessageTimeout", T.INTEGER, _ro(30, persistent=True), instance="Default",
          unit="s", min_limit=1, max_limit=HOUR_S)
    # TransactionEvent retries when the CSMS fails to process one (E13): 5 attempts,
    # 60 s apart (growing linearly). An unanswered call counts only if the link answers a
    # ping (agent/ocpp/outbox.py): a dead link never uses the attempts up.
    b.add(c, "MessageAttempts", T.INTEGER, _rw(5), instance="TransactionEvent", min_limit=1,
          max_limit=20)
    b.add(c, "MessageAttemptInterval", T.INTEGER, _rw(60), instance="TransactionEvent",
          unit="s", min_limit=1, max_limit=HOUR_S)
    # valuesList = the slots (errata B09); the connection manager reads the order when it
    # starts, so a new priority takes effect after a reboot (B10 migrations end in Reset).
    b.add(c, "NetworkConfigurationPriority", T.SEQUENCE_LIST, _rw("1"), values=NETWORK_SLOTS,
          reboot_required=True)
    b.add(c, "NetworkProfileConnectionAttempts", T.INTEGER, _rw(3), min_limit=1, max_limit=100)
    # Ten minutes: shorter gaps are cellular hand-overs and reconnects where re-sending
    # every connector's status would only cost data; after a longer outage the CSMS has
    # likely marked the station offline and needs the full picture again.
    b.add(c, "OfflineThreshold", T.INTEGER, _rw(600), unit="s", min_limit=0, max_limit=WEEK_S)
    # No QueueAllMessages (optional, Part 5 C-21): what is queued is fixed (outbox.py:
    # transaction events and what must reach the CSMS), not a setting.
    # A Reset whose restart fails (the new runtime cannot be built) is tried again this
    # often (daemon.py); then the process exits and systemd starts it anew.
    b.add(c, "ResetRetries", T.INTEGER, _rw(2), min_limit=0, max_limit=10)
    # Reconnect back-off: 10 s + up to 10 s random, doubled 5 times (at most ~5.5 min):
    # quick after a blip, yet a fleet reconnecting after a CSMS outage spreads out.
    b.add(c, "RetryBackOffRandomRange", T.INTEGER, _rw(10), unit="s", min_limit=0,
          max_limit=HOUR_S)
    b.add(c, "RetryBackOffRepeatTimes", T.INTEGER, _rw(5), min_limit=0, max_limit=10)
    b.add(c, "RetryBackOffWaitMinimum", T.INTEGER, _rw(10), unit="s", min_limit=0,
          max_limit=HOUR_S)
    # "For an EVSE with only fixed cables, the mutability SHALL be ReadOnly and the actual
    # value SHALL be false" (appendix 3): fixed cables have connector types starting "c".
    if all(e.effective_connector_type.startswith("c") for e in station.evses):
        b.add(c, "UnlockOnEVSideDisconnect", T.BOOLEAN, _ro(False, constant=True))
    else:
        b.add(c, "UnlockOnEVSideDisconnect", T.BOOLEAN, _rw(True))
    # 900 s: carriers ask for keep-alives no more often than every 5 minutes and IoT SIM
    # NATs keep idle TCP for hours; a quiet station sends aligned meter values every 15
    # minutes, so at 900 s those keep the link alive and no ping is sent at all (at 600 s
    # one went every idle quarter: 0.4 MB of a 5 MB month, README "Monthly data"). On a
    # network that forgets idle mappings sooner, the station learns a shorter interval by
    # itself (agent/ocpp/keepalive.py). A link that dies while messages wait for answers
    # is not left to the pings: a call without an answer probes the link first
    # (agent/ocpp/outbox.py), so Part 4's advice (an interval below MessageAttempts x
    # MessageAttemptInterval, lest dead links use up the attempts) is met otherwise.
    # 0 disables the station's pings; negative values are not allowed (Part 4 §8.4).
    b.add(c, "WebSocketPingInterval", T.INTEGER, _rw(900), unit="s", min_limit=0,
          max_limit=DAY_S)


# --- SecurityCtrlr (A) ---------------------------------------------------------------

def _security(b: _Builder, station: StationSpec) -> None:
    c = Component("SecurityCtrlr")
    # Changed only by the station when the CSMS upgrades the profile (A05), and then kept.
    b.add(c, "SecurityProfile", T.INTEGER, _ro(station.security_profile, persistent=True),
          min_limit=1, max_limit=3)
    # The O of the CSR subject; X.509 allows at most 64 characters (RFC 5280 ub-organization-name).
    b.add(c, "OrganizationName", T.STRING, _rw(station.organization_name), max_limit=64)
    # maxLimit: the most certificates the store keeps (agent/pki/certstore.py MAX_ENTRIES).
    b.add(c, "CertificateEntries", T.INTEGER, _ro(0), min_limit=0, max_limit=CERTIFICATE_ENTRIES)
    # Write-only so a CSMS reading the whole model never gets it (errata 2.17.3). Present
    # whatever the profile: the agent implements profiles 1 and 2, not only 3.
    b.add(c, "BasicAuthPassword", T.STRING,
          AttributeDefinition(A.ACTUAL, M.WRITE_ONLY, True, False, ""),
          max_limit=40, pattern=PASSWORD_PATTERN)
    if station.identity:
        # Read-only: the identity is part of the URL and the Basic auth user name, which
        # the agent takes from its config file.
        b.add(c, "Identity", T.STRING, _ro(station.identity, constant=True), max_limit=48)
    # False: more than one CSMSRootCertificate may be installed at a time (no AS-2).
    b.add(c, "AdditionalRootCertificateCheck", T.BOOLEAN, _ro(False, constant=True))
    # Wait a minute before a new CSR, three tries: the CSMS's CA may sign by hand.
    b.add(c, "CertSigningWaitMinimum", T.INTEGER, _rw(60), unit="s", min_limit=1,
          max_limit=DAY_S)
    b.add(c, "CertSigningRepeatTimes", T.INTEGER, _rw(3), min_limit=0, max_limit=10)


# --- DeviceDataCtrlr (B) ---------------------------------------------------------------

# The agent has no small fixed buffers: these are sized so a CSMS can read or write the
# whole configuration in one request, while a request still fits easily in memory and in
# the transport's frame limit.
ITEMS_PER_MESSAGE = 100
BYTES_PER_MESSAGE = 65536


def _device_data(b: _Builder) -> None:
    c = Component("DeviceDataCtrlr")
    for message in ("GetReport", "GetVariables", "SetVariables"):
        b.add(c, "ItemsPerMessage", T.INTEGER, _ro(ITEMS_PER_MESSAGE, constant=True),
              instance=message)
        b.add(c, "BytesPerMessage", T.INTEGER, _ro(BYTES_PER_MESSAGE, constant=True),
              instance=message, unit="B")
    # The schemas' own caps: SetVariableData.attributeValue and valuesList 1000,
    # GetVariableResult.attributeValue and VariableAttribute.value 2500 characters.
    b.add(c, "ConfigurationValueSize", T.INTEGER, _ro(1000, constant=True), max_limit=1000)
    b.add(c, "ReportingValueSize", T.INTEGER, _ro(2500, constant=True), max_limit=2500)
    b.add(c, "ValueSize", T.INTEGER, _ro(2500, constant=True), max_limit=2500)


# --- ClockCtrlr ----------------------------------------------------------------------

def _clock(b: _Builder) -> None:
    c = Component("ClockCtrlr")
    # A live value: the daemon binds it to its clock with DeviceModel.provide().
    b.add(c, "DateTime", T.DATE_TIME, _ro(""))
    # The agent takes the CSMS's time from BootNotification/Heartbeat; it can instead
    # trust the host's clock, which on Linux is NTP-synchronized by the OS.
    # In order of preference, the first usable one wins (provisioning.py): NTP is the
    # host's clock while the kernel reports it synchronized.
    b.add(c, "TimeSource", T.SEQUENCE_LIST, _rw("Heartbeat"), values=("Heartbeat", "NTP"))
    # Corrections above a minute are reported as SettingSystemTime: beyond normal drift.
    b.add(c, "TimeAdjustmentReportingThreshold", T.INTEGER, _rw(60), unit="s", min_limit=0,
          max_limit=DAY_S)


# --- AuthCtrlr (C) ---------------------------------------------------------------------

def _auth(b: _Builder, station: StationSpec) -> None:
    c = Component("AuthCtrlr")
    b.add(c, "Enabled", T.BOOLEAN, _rw(True))
    # CSMSs authorize the idToken before RequestStartTransaction; asking again costs a
    # round trip and data.
    b.add(c, "AuthorizeRemoteStart", T.BOOLEAN, _rw(False))
    # Drivers expect known cards to work when the link is down.
    b.add(c, "LocalAuthorizeOffline", T.BOOLEAN, _rw(True))
    # Online, the CSMS decides: a revoked card must not start a session from the cache.
    b.add(c, "LocalPreAuthorize", T.BOOLEAN, _rw(False))
    # Unknown cards offline would be free energy for anyone: off unless the CPO opts in.
    b.add(c, "OfflineTxForUnknownIdEnabled", T.BOOLEAN, _rw(False))
    # idToken groupId is at most 36 characters; "" = no master pass group.
    b.add(c, "MasterPassGroupId", T.STRING, _rw(""), max_limit=36)
    b.add(c, "DisableRemoteAuthorization", T.BOOLEAN, _rw(False))


# --- TxCtrlr (E) -----------------------------------------------------------------------

def _tx(b: _Builder) -> None:
    c = Component("TxCtrlr")
    # Two minutes from authorization to plugging in: time to unwind a cable.
    b.add(c, "EVConnectionTimeOut", T.INTEGER, _rw(120), unit="s", min_limit=1,
          max_limit=HOUR_S)
    # Unplugging ends the session (no "suspend and re-plug"), as TxStopPoint says.
    b.add(c, "StopTxOnEVSideDisconnect", T.BOOLEAN, _ro(True, constant=True))
    b.add(c, "StopTxOnInvalidId", T.BOOLEAN, _rw(True))
    # With StopTxOnInvalidId false: the energy a transaction may still draw once the CSMS
    # refused its idToken, counted from that answer (deauthorization.py). 0 Wh: none.
    # At most 1 MWh: more than any EV battery, so "no cap" is expressible, yet a number
    # the metering arithmetic holds exactly.
    b.add(c, "MaxEnergyOnInvalidId", T.INTEGER, _rw(0), unit="Wh", min_limit=0,
          max_limit=1_000_000)
    # While the CSMS has not accepted the station (never did, or answered Pending or
    # Rejected) sessions start only if this is true (provisioning.py BeforeAccepted). A
    # station it accepted before charges as usual while it restarts during an outage.
    b.add(c, "TxBeforeAcceptedEnabled", T.BOOLEAN, _rw(False))
    # A transaction starts when energy can flow (cable in and authorized) and ends when
    # either goes away: the OCPP 1.6 behaviour most CSMSs bill by, and no transaction
    # (and no messages) for a car merely plugged in.
    # At least one point each: with none a transaction never starts (energy flows with
    # no TransactionEvent at all) or never ends.
    b.add(c, "TxStartPoint", T.MEMBER_LIST, _rw("PowerPathClosed"), values=TX_POINTS,
          pattern=NOT_EMPTY)
    b.add(c, "TxStopPoint", T.MEMBER_LIST, _rw("EVConnected,Authorized"), values=TX_POINTS,
          pattern=NOT_EMPTY)


# --- SampledDataCtrlr / AlignedDataCtrlr (J) ---------------------------------------------

def _metering(b: _Builder, station: StationSpec) -> None:
    measurands = tuple(station.measurands)
    energy = "Energy.Active.Import.Register"
    first = energy if energy in measurands else (measurands[0] if measurands else "")
    # maxLimit of a list is its longest text (appendix 1): all measurands, comma-separated.
    every = len(",".join(measurands)) or None

    c = Component("SampledDataCtrlr")
    b.add(c, "Enabled", T.BOOLEAN, _rw(True))
    b.add(c, "Available", T.BOOLEAN, _ro(True, constant=True))
    # Energy at start and end is what billing needs; power during the session lets the
    # CSMS show progress and check smart charging. Every extra measurand is sent every
    # interval, so the defaults stay minimal.
    b.add(c, "TxStartedMeasurands", T.MEMBER_LIST, _rw(first), values=measurands,
          max_limit=every)
    updated = ",".join(m for m in (energy, "Power.Active.Import") if m in measurands) or first
    b.add(c, "TxUpdatedMeasurands", T.MEMBER_LIST, _rw(updated), values=measurands,
          max_limit=every)
    # One sample a minute during charging (the "typical use" of the monthly data budget).
    b.add(c, "TxUpdatedInterval", T.INTEGER, _rw(60), unit="s", min_limit=0, max_limit=DAY_S)
    b.add(c, "TxEndedMeasurands", T.MEMBER_LIST, _rw(first), values=measurands,
          max_limit=every)
    # 0: the Ended message carries start and end readings only, not a sample every
    # interval of the session (the clock-aligned ones below serve tariff periods).
    b.add(c, "TxEndedInterval", T.INTEGER, _rw(0), unit="s", min_limit=0, max_limit=DAY_S)

    c = Component("AlignedDataCtrlr")
    b.add(c, "Enabled", T.BOOLEAN, _rw(True))
    b.add(c, "Available", T.BOOLEAN, _ro(True, constant=True))
    b.add(c, "Measurands", T.MEMBER_LIST, _rw(first), values=measurands,
          max_limit=every)
    # Quarter-hourly register readings: the usual grid settlement and tariff period.
    b.add(c, "Interval", T.INTEGER, _rw(900), unit="s", min_limit=0, max_limit=DAY_S)
    b.add(c, "SendDuringIdle", T.BOOLEAN, _rw(False))
    # Quarter-hour energy in the Ended message: enough for time-of-use billing, sent once.
    b.add(c, "TxEndedMeasurands", T.MEMBER_LIST, _rw(first), values=measurands,
          max_limit=every)
    b.add(c, "TxEndedInterval", T.INTEGER, _rw(900), unit="s", min_limit=0, max_limit=DAY_S)


# --- optional functional blocks ----------------------------------------------------------

# LocalAuthListCtrlr limits (see _optional). BytesPerMessage stays below the session's
# frame limit (agent/ocpp/session.py MAX_FRAME_BYTES, 1 MiB).
LOCAL_LIST_ENTRIES = 200_000
LOCAL_LIST_ITEMS = 500
LOCAL_LIST_BYTES = 262_144
LOCAL_LIST_STORAGE = 67_108_864


def _absent(b: _Builder, component: Component) -> None:
    # "Available cannot be false if Enabled is true" (appendix 4): both false, read-only.
    b.add(component, "Enabled", T.BOOLEAN, _ro(False, constant=True))
    b.add(component, "Available", T.BOOLEAN, _ro(False, constant=True))


def _optional(b: _Builder, station: StationSpec) -> None:
    features = station.features

    c = Component("AuthCacheCtrlr")
    if FEATURE_AUTH_CACHE in features:
        b.add(c, "Enabled", T.BOOLEAN, _rw(True))
        b.add(c, "Available", T.BOOLEAN, _ro(True, constant=True))
        # A month after last use: a regular's card still works offline after holidays;
        # the CSMS can shorten it per token (cacheExpiryDateTime) or clear the cache.
        b.add(c, "LifeTime", T.INTEGER, _rw(30 * DAY_S), unit="s", min_limit=0,
              max_limit=YEAR_S)
        b.add(c, "Storage", T.INTEGER, _ro(0), unit="B", max_limit=1_048_576)
        b.add(c, "Policy", T.OPTION_LIST, _rw("LRU"), values=("LRU", "LFU"))
        b.add(c, "DisablePostAuthorize", T.BOOLEAN, _rw(False))
    else:
        _absent(b, c)

    c = Component("LocalAuthListCtrlr")
    if FEATURE_LOCAL_AUTH_LIST in features:
        b.add(c, "Enabled", T.BOOLEAN, _rw(True))
        b.add(c, "Available", T.BOOLEAN, _ro(True, constant=True))
        # The list lives in SQLite and is looked up by key (agent/blocks/local_auth_list.py):
        # its size costs flash, not memory. 200,000 cards: twice a large public site's list;
        # 64 MiB of estimated row bytes holds them with room for long idTokenInfos.
        b.add(c, "Entries", T.INTEGER, _ro(0), max_limit=LOCAL_LIST_ENTRIES)
        # 500 typical entries (~150 B of JSON each) fit BytesPerMessage with room; a list
        # of 100,000 is 200 messages, each one store transaction.
        b.add(c, "ItemsPerMessage", T.INTEGER, _ro(LOCAL_LIST_ITEMS, constant=True))
        b.add(c, "BytesPerMessage", T.INTEGER, _ro(LOCAL_LIST_BYTES, constant=True), unit="B")
        b.add(c, "Storage", T.INTEGER, _ro(0), unit="B", max_limit=LOCAL_LIST_STORAGE)
        b.add(c, "DisablePostAuthorize", T.BOOLEAN, _rw(False))
    else:
        _absent(b, c)

    c = Component("ReservationCtrlr")
    if FEATURE_RESERVATION in features:
        b.add(c, "Enabled", T.BOOLEAN, _rw(True))
        b.add(c, "Available", T.BOOLEAN, _ro(True, constant=True))
        # ReadWrite: an operator who wants every reservation to name its EVSE says so
        # (ReserveNow without evseId is then Rejected, agent/blocks/reservation.py).
        b.add(c, "NonEvseSpecific", T.BOOLEAN, _rw(True))
    else:
        _absent(b, c)

    c = Component("SmartChargingCtrlr")
    if FEATURE_SMART_CHARGING in features:
        b.add(c, "Enabled", T.BOOLEAN, _rw(True))
        b.add(c, "Available", T.BOOLEAN, _ro(True, constant=True))
        # phaseToUse needs hardware that picks the phase of 1-phase charging; the HAL has
        # none, so profiles that ask for it are refused (K01.FR.20).
        b.add(c, "ACPhaseSwitchingSupported", T.BOOLEAN, _ro(False, constant=True))
        # maxLimit: the most profiles kept (SetChargingProfile beyond: TooManyElements).
        b.add(c, "Entries", T.INTEGER, _ro(0), instance="ChargingProfiles", max_limit=100)
        b.add(c, "ProfileStackLevel", T.INTEGER, _ro(10, constant=True))
        b.add(c, "RateUnit", T.MEMBER_LIST, _ro("A,W", constant=True), values=("A", "W"))
        # 48: half-hour periods over a day, and a day-ahead price curve in 24 hours.
        b.add(c, "PeriodsPerSchedule", T.INTEGER, _ro(48, constant=True))
        # Limits changing less than 10 % need not be notified: saves messages on jittery
        # external limits, still catches real changes.
        b.add(c, "LimitChangeSignificance", T.DECIMAL, _rw(10), unit="Percent",
              min_limit=0, max_limit=100)
        b.add(c, "ExternalControlSignalsEnabled", T.BOOLEAN, _rw(False))
        b.add(c, "NotifyChargingLimitWithSchedules", T.BOOLEAN, _rw(False))
    else:
        _absent(b, c)
