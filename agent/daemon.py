"""Wiring: config -> store -> device model -> station -> blocks -> connection.

A `Runtime` is one life of the station's work, from boot to Reset or stop. A Reset from
the CSMS ends the runtime and the daemon builds a fresh one from what is persisted (the
same process: systemd sees no failure, and nothing is re-read from config but what the
device model does not own).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import logging
import time
from pathlib import Path
from typing import Any, Callable, Literal, cast

from agent import __version__
from agent.blocks.auth_cache import AuthCache
from agent.blocks.local_auth_list import LocalAuthList
from agent.blocks.authorization import Authorization
from agent.blocks.availability import Availability
from agent.blocks.certificates import Certificates
from agent.blocks.customer_information import (AuthCacheRecords, CustomerInformation,
                                               LocalListRecords, LogFileRecords,
                                               TransactionRecords, forget_cached,
                                               local_list_entry, queued_transaction_events)
from agent.blocks.data_transfer import DataTransfer
from agent.blocks.deauthorization import InvalidIdEnergy
from agent.blocks.diagnostics import Diagnostics
from agent.blocks.firmware import FirmwareUpdate
from agent.blocks.metering import AlignedMeterValues
from agent.blocks.model_repairs import report_repairs
from agent.blocks.network_profiles import NetworkProfiles, connection_data
from agent.blocks.provisioning import (CLEAN_STOP, LAST_START, PENDING_BOOT_REASON,
                                       BeforeAccepted, Identity, Provisioning,
                                       decide_boot_reason, system_boot_time)
from agent.blocks.reservation import Reservations
from agent.blocks.reset import ResetWork
from agent.blocks.remote_control import RemoteControl, meter_values
from agent.blocks.metering.values import Extras
from agent.blocks.security_log import SecurityLog
from agent.blocks.smart_charging.block import SmartCharging
from agent.blocks.smart_charging.schedule import EvseLimits
from agent.blocks.transactions import Transactions
from agent.blocks.variables import Variables
from agent.clock import Clock, SystemClock, format_datetime
from agent.config import SHIPPED_PASSWORD, Config, ConfigError
from agent.control import ControlServer, EvseStatus, build_status, socket_path
from agent.hardware import Hardware, HardwareBridge, build_hardware, connector_type
from agent.logfile import attach_log_file, log_files
from agent.model.definitions import standard_definitions
from agent.model.device_model import DeviceModel
from agent.model.types import (FEATURE_AUTH_CACHE, FEATURE_LOCAL_AUTH_LIST,
                               FEATURE_RESERVATION, FEATURE_SMART_CHARGING, Component,
                               EvseSpec, StationSpec, Variable)
from agent.ocpp.connection import ConnectionManager
from agent.ocpp.keepalive import KeepAlivePolicy, MetaMemory
from agent.ocpp.outbox import Outbox
from agent.ocpp.session import Router
from agent.ocpp.transport import Endpoint, TransportError
from agent.pki.lazy import LazyCertificateStore
from agent.service import ServiceNotifier, StationState
from agent.station import Connector, Evse, Station
from agent.store import Store
from agent.trust import StationTrust

log = logging.getLogger(__name__)

# "reexec": start the process anew (after a firmware install: new code must be loaded).
Outcome = Literal["stop", "restart", "reexec"]

# The [csms] table of the config seeds network connection profile 1 on first start; from
# then on the persisted profile is the truth (docs/architecture.md).
NETWORK_PROFILE = "network.profile.1"
SEEDED = "daemon.seeded"
PROVISIONAL = "provisional"   # SEEDED's value while seeded from the placeholder password
INVALID_EVENT_GAP_S = 3600.0
# Between tries of a Reset whose new runtime failed to build (OCPPCommCtrlr.ResetRetries):
# long enough for a transient storage or hardware fault to pass.
RESET_RETRY_WAIT_S = 5


class ModelCommSettings:
    """OCPPCommCtrlr values for the connection, read at each use so SetVariables counts."""

    def __init__(self, model: DeviceModel) -> None:
        self._model = model

    def message_timeout(self) -> float:
        return self._model.get_int("OCPPCommCtrlr", "MessageTimeout", instance="Default")

    def ping_interval(self) -> float:
        return self._model.get_int("OCPPCommCtrlr", "WebSocketPingInterval")

    def backoff(self) -> tuple[float, float, int]:
        get = self._model.get_int
        return (get("OCPPCommCtrlr", "RetryBackOffWaitMinimum"),
                get("OCPPCommCtrlr", "RetryBackOffRandomRange"),
                get("OCPPCommCtrlr", "RetryBackOffRepeatTimes"))


def station_spec(config: Config, firmware_version: str) -> StationSpec:
    return StationSpec(
        vendor=config.station.vendor, model=config.station.model,
        serial_number=config.station.serial_number,
        firmware_version=firmware_version,
        evses=tuple(EvseSpec(e.id, e.max_current_a, e.phases, e.nominal_voltage_v,
                             connector_type=connector_type(e, config.hal.driver))
                    for e in config.evses),
        security_profile=config.csms.security_profile, identity=config.station.id,
        features=frozenset({FEATURE_AUTH_CACHE, FEATURE_LOCAL_AUTH_LIST, FEATURE_SMART_CHARGING,
                            FEATURE_RESERVATION}))


def log_dir(config: Config) -> Path:
    """Where the agent keeps its own bounded log, for GetLog DiagnosticsLog."""
    return config.storage.dir / "log"


def seed_first_start(store: Store, model: DeviceModel, config: Config) -> None:
    """What the config contributes only once: the first network profile and password.

    Seeded with the shipped placeholder password, they are provisional: the package
    starts the service before anyone has edited the file, and the operator who then
    writes the real URL and password must get them. So each start seeds them again until
    the config has a password of its own, or the CSMS has set one (A01) meanwhile."""
    seeded = store.get_meta(SEEDED)
    if seeded == "1":
        return
    if seeded == PROVISIONAL and model.get_str("SecurityCtrlr", "BasicAuthPassword") \
            != SHIPPED_PASSWORD:
        store.set_meta(SEEDED, "1")   # the CSMS replaced the placeholder: its word counts
        return
    provisional = config.csms.password == SHIPPED_PASSWORD
    if provisional:
        log.info("network profile 1 and the password seeded from %s for now: the "
                 "next start with a real csms.password seeds them again", config.path)
    elif seeded == PROVISIONAL:
        log.info("network profile 1 and the password seeded again from %s, which no "
                 "longer has the placeholder password", config.path)
    profile = connection_data(config.csms.url, config.csms.security_profile)
    with store.transaction():
        store.set_meta(NETWORK_PROFILE, json.dumps(profile))
        if config.csms.password is not None:
            result = model.set(Component("SecurityCtrlr"), Variable("BasicAuthPassword"),
                               config.csms.password)
            if result.status != "Accepted":
                raise ConfigError(f"{config.path}: csms.password: not accepted as "
                                  f"SecurityCtrlr.BasicAuthPassword ({result.reason_code})")
        store.set_meta(SEEDED, PROVISIONAL if provisional else "1")


class Runtime:
    def __init__(self, config: Config, store: Store, clock: Clock, hardware: Hardware,
                 on_frame: Callable[[str, str], None] | None = None) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self._outcome: asyncio.Future[Outcome] | None = None
        # The installer knows best what runs (an A/B slot's version); else the config's
        # firmware_version, whose default is this package's version.
        installed = hardware.installer.running_version() if hardware.installer else None
        self.firmware_version = installed or config.station.firmware_version
        self.model = DeviceModel(store, standard_definitions(
            station_spec(config, self.firmware_version)))
        self.model.provide(Component("ClockCtrlr"), Variable("DateTime"),
                           lambda: format_datetime(clock.now()))
        seed_first_start(store, self.model, config)
        self.station = Station([
            Evse(e.id, e.max_current_a, e.phases, e.nominal_voltage_v,
                 connectors={1: Connector(e.id, 1)}) for e in config.evses])
        self.hardware = hardware
        self.bridge = HardwareBridge(self.station, hardware)
        self.router = Router()
        self.comm = ModelCommSettings(self.model)
        self.link = ConnectionManager(endpoint=self._endpoint, router=self.router, clock=clock,
                                      settings=self.comm, on_frame=on_frame,
                                      keepalive=KeepAlivePolicy(MetaMemory(store)))
        boot_reason = decide_boot_reason(
            store.get_meta(PENDING_BOOT_REASON), _float(store.get_meta(LAST_START)),
            store.get_meta(CLEAN_STOP) == "1", system_boot_time())
        store.set_meta(LAST_START, repr(time.time()))
        store.set_meta(CLEAN_STOP, "0")
        self.provisioning = Provisioning(
            link=self.link, router=self.router, model=self.model, clock=clock, store=store,
            identity=Identity(config.station.vendor, config.station.model,
                              config.station.serial_number, self.firmware_version),
            boot_reason=boot_reason, restart=self.request_restart,
            reset_evse=self.reset_evse, evse_ids=[e.id for e in config.evses],
            is_idle=lambda evse_id: not self.transactions.busy(evse_id))
        self.variables = Variables(link=self.link, router=self.router, model=self.model,
                                   clock=clock)
        self.outbox = Outbox(store, self.link, clock, self.model)
        # Stored settings the model had to reset as it loaded: the CSMS hears of them.
        report_repairs(self.model, store, self.outbox, clock)
        self.security_log = SecurityLog(store, clock, self.outbox)
        self.provisioning.on_time_set.append(lambda shift: self.security_event(
            "SettingSystemTime", f"CSMS time moved the clock by {shift:+.0f} s"))
        # Opened (cryptography imported) only once a certificate is installed or needed.
        self.certstore = LazyCertificateStore(config.storage.dir / "certs")
        self.trust = StationTrust(config.csms, self.certstore)
        self.certificates = Certificates(
            self.router, self.link, self.model, clock, self.certstore, config.station.id,
            security_event=self.security_event,
            on_new_station_certificate=self._new_station_certificate,
            security_profile=lambda: self.model.get_int("SecurityCtrlr", "SecurityProfile"),
            trusted_roots=self.trust.csms_roots_pem,
            configured_roots=self.trust.configured_roots)
        self.network = NetworkProfiles(store=store, model=self.model, router=self.router,
                                       trust=self.trust, security_event=self.security_event)
        self.network.guard_priority(self.router)   # after Variables registered SetVariables
        self._failure_reported: str | None = None
        self._invalid_reported_at: float | None = None
        self._invalid_suppressed = 0
        self.router.on_invalid = self._invalid_message
        self.link.on_failure.append(self._connect_failed)
        self.link.on_open.append(self._connected)
        # A01: a new BasicAuthPassword is logged (never its value) and used from the next
        # connection on, made at once.
        self.variables.after_set[("SecurityCtrlr", "BasicAuthPassword")] = self._new_password
        self.auth_cache = AuthCache(self.router, self.model, clock, store)
        # D01/D02: the CSMS's list of cards, consulted before the cache (C13, C14).
        self.local_auth_list = LocalAuthList(self.router, self.model, store)
        self.authorization = Authorization(self.link, self.router, self.model, clock, store,
                                           self.auth_cache, local_list=self.local_auth_list)
        # H01-H04: EVSEs held for a driver; asked before a token is accepted for an EVSE.
        self.reservations = Reservations(
            router=self.router, model=self.model, store=store, outbox=self.outbox,
            clock=clock, station=self.station,
            connector_types={e.id: connector_type(e, config.hal.driver) for e in config.evses},
            authorized=lambda e: self.transactions.authorized(e),
            busy=lambda e: self.transactions.busy(e))
        self.variables.after_set[("ReservationCtrlr", "Enabled")] = \
            self.reservations.enabled_changed
        # Expiry is wall-clock time: the CSMS's time, once taken, may have ended some.
        self.provisioning.on_accepted.append(self.reservations.poke)
        self.provisioning.on_time_set.append(lambda _shift: self.reservations.poke())
        self.transactions = Transactions(
            link=self.link, router=self.router, model=self.model, clock=clock, store=store,
            outbox=self.outbox, station=self.station, hardware=hardware,
            authorization=BeforeAccepted(self.authorization, self.provisioning,
                                         lambda e: self.transactions.busy(e)),
            reading=lambda e: self._latest_reading(e)(),
            limit=lambda e: self.invalid_id.limit_a(e, self.smart_charging.current_a(e)),
            power_limit=lambda e: self.invalid_id.limit_w(e, self.smart_charging.power_w(e)),
            extras=self._offered,
            check_tx_profile=lambda e, p: self.smart_charging.check_remote_start_profile(e, p),
            reservations=self.reservations)
        self.transactions.recover()
        # B02: no remote start before Accepted; B12: Reset ends or waits for transactions.
        self.provisioning.refuse_until_accepted(self.router, "RequestStartTransaction")
        self.provisioning.reset.attach(ResetWork(
            end_all=self.transactions.end_all,
            running=lambda e: [tx.id for evse, tx in self.transactions.open.items()
                               if e is None or evse == e],
            switch_off=lambda e: hardware.evses[e].switch_off(),
            pending=self.outbox.pending, connected=lambda: self.link.connected))
        self.transactions.on_ended.append(self.provisioning.reset.transaction_ended)
        self.outbox.on_answer("TransactionEvent", self.provisioning.reset.message_answered)
        # MaxEnergyOnInvalidId (E05): a transaction whose token the CSMS refused, kept
        # open because StopTxOnInvalidId is false, draws that much more energy at most.
        self.invalid_id = InvalidIdEnergy(
            self.model, evse_of=self._transaction_evse,
            reading=lambda e: self._latest_reading(e)(), reapply=self.transactions.reapply)
        self.outbox.on_answer("TransactionEvent", self.invalid_id.event_answered)
        self.transactions.on_ended.append(self.invalid_id.transaction_ended)
        # Smart charging after Transactions' recovery: TxProfiles of transactions that
        # ended with the power go with them.
        self.smart_charging = SmartCharging(
            router=self.router, link=self.link, model=self.model, store=store, clock=clock,
            evses={e.id: EvseLimits(e.max_current_a, e.phases, e.nominal_voltage_v, e.dc)
                   for e in config.evses},
            transactions=self.transactions, outbox=self.outbox,
            external_limit=hardware.external_limit)
        self.transactions.on_started.append(self.smart_charging.transaction_started)
        self.transactions.on_ended.append(self.smart_charging.transaction_ended)
        self.aligned = AlignedMeterValues(
            self.link, self.model, clock,
            {e: self._latest_reading(e) for e in self.station.evses},
            lambda evse_id: self.transactions.busy(evse_id), extras=self._offered)
        # J01: an EVSE in a transaction gets its clock-aligned values in TransactionEvents.
        self.aligned.subscribe(self.transactions.clock_aligned)
        # Availability after Transactions: it asks them which EVSE is busy as it starts.
        self.availability = Availability(
            link=self.link, router=self.router, station=self.station, model=self.model,
            store=store, outbox=self.outbox, clock=clock, is_busy=self.transactions.busy)
        self.transactions.on_ended.append(self.availability.transaction_ended)
        # A reservation ends when the CSMS sets its EVSE Inoperative (TC_H_21); its
        # ReservationStatusUpdate follows the StatusNotification that shows it (TC_H_07).
        self.reservations.wanted = lambda e: self.availability.wanted(e, 1)
        self.reservations.status_reported = self.availability.reported
        self.reservations.report_again = self.availability.report_again
        self.availability.on_applied.append(self.reservations.refresh)
        self.transactions.on_ended.append(lambda _evse: self.reservations.refresh())
        self.reservations.refresh()
        self.bridge.watch_faults(self.availability.hardware_changed)
        # Remote control (block F): TriggerMessage serves what the owning blocks produce.
        self.remote_control = RemoteControl(self.router, self.station, hardware, clock=clock,
                                            transaction_on=lambda e: self.transactions.open.get(e))
        trigger = self.remote_control.register
        trigger("BootNotification", self.provisioning.trigger_boot,   # F06.FR.17
                check=lambda _: ("Unspecified", "BootNotification already Accepted")
                if self.provisioning.registration == "Accepted" else None)
        trigger("Heartbeat", self.provisioning.trigger_heartbeat)
        trigger("StatusNotification", self.availability.trigger_status, scope="connector")
        trigger("MeterValues", meter_values(self.link, self.aligned.triggered), scope="evse",
                check=lambda e: None if self.aligned.triggered(e) else "NotFound")
        trigger("TransactionEvent", self.transactions.trigger_event, scope="evse",
                check=lambda e: None if self.transactions.busy(e) else "TxNotFound")
        trigger("SignChargingStationCertificate", self.certificates.trigger_sign_certificate)
        self.firmware = FirmwareUpdate(
            router=self.router, link=self.link, outbox=self.outbox, store=store, clock=clock,
            installer=hardware.installer, work_dir=config.storage.dir / "firmware",
            running_version=self.firmware_version, evse_ids=self.station.evses,
            evses=_FirmwareEvses(self), manufacturer_roots=self._manufacturer_roots,
            download=_transfer("download"), check_url=_transfer("check_url"),
            ssl_context=self._transfer_tls, security_event=self.security_event,
            allow_new_sessions=lambda: self.model.get_bool(
                "ChargingStation", "AllowNewSessionsPendingFirmwareUpdate"),
            restart=self.request_reexec, message_timeout=self.comm.message_timeout)
        self.transactions.on_ended.append(self.firmware.transaction_ended)
        self.transactions.on_released.append(self.firmware.transaction_ended)
        self.reservations.on_ended.append(self.firmware.transaction_ended)
        trigger("FirmwareStatusNotification", self.firmware.trigger_status)
        self.diagnostics = Diagnostics(
            self.router, self.link, clock, store, config.station.id,
            work_dir=config.storage.dir / "diagnostics", log_dir=log_dir(config),
            upload=_transfer("upload"), check_url=_transfer("check_url"),
            security_log_text=self.security_log.export_text, ssl_context=self._transfer_tls)
        self.diagnostics.recover()
        trigger("LogStatusNotification", self.diagnostics.trigger_status)
        # N09/N10: what the station holds about a customer, reported and cleared.
        self.customer_information = CustomerInformation(self.router, self.link, clock, [
            AuthCacheRecords(self.auth_cache,
                             forget_cached(store, self.auth_cache, self.model)),
            LocalListRecords(local_list_entry(store)),
            TransactionRecords(lambda: list(self.transactions.open.values()),
                               queued_transaction_events(store)),
            LogFileRecords(lambda: log_files(log_dir(config)))],
            send_timeout=self.comm.message_timeout)
        self.data_transfer = DataTransfer(self.router)   # P01, and vendors' extensions

    def _endpoint(self) -> Endpoint:
        profile = self.network.current()
        if profile is None:
            raise TransportError("no usable network connection profile (all are below "
                                 f"security profile {self.network.security_profile()})")
        password = None
        if profile.security_profile in (1, 2):
            password = self.model.get_str("SecurityCtrlr", "BasicAuthPassword") or None
        context = None
        if profile.security_profile >= 2:
            try:
                context = self.trust.tls(profile.security_profile).context()
            except (ssl.SSLError, OSError) as exc:
                raise TransportError(f"TLS set-up for network profile {profile.slot} "
                                     f"failed: {exc}") from None
        return Endpoint(url=profile.url, station_id=self.config.station.id, password=password,
                        ssl_context=context, open_timeout=profile.message_timeout,
                        client_certificate=profile.security_profile == 3)

    def _connect_failed(self, error: TransportError) -> None:
        self.network.attempt_failed(error.event)
        # Errata A00.FR.316: one event for a run of failures of the same kind, not one per
        # attempt, or a week offline would flood the queue.
        if error.event is not None and error.event != self._failure_reported:
            self._failure_reported = error.event
            self.security_event(error.event, str(error))

    async def _new_password(self) -> None:
        self.security_event("ReconfigurationOfSecurityParameters",
                            "SecurityCtrlr.BasicAuthPassword changed by the CSMS")
        await self.link.disconnect()

    def _new_station_certificate(self) -> None:
        # A01/A02: the new certificate is used from the next connection; on profile 3
        # that connection is made now, so a bad certificate shows while the CSMS watches.
        if self.network.current() is not None and self.network.current().security_profile == 3:
            asyncio.ensure_future(self.link.disconnect())

    async def _connected(self, session: object) -> None:
        self._failure_reported = None
        self.network.connected()

    def _invalid_message(self, description: str) -> None:
        """InvalidMessages, at most once per INVALID_EVENT_GAP_S: a CSMS that keeps
        sending bad frames must not push the rest out of the bounded security log."""
        now = self.clock.monotonic()
        if self._invalid_reported_at is not None and \
                now - self._invalid_reported_at < INVALID_EVENT_GAP_S:
            self._invalid_suppressed += 1
            return
        more = (f" (and {self._invalid_suppressed} more since the last report)"
                if self._invalid_suppressed else "")
        self._invalid_reported_at, self._invalid_suppressed = now, 0
        self.security_event("InvalidMessages", f"from the CSMS: {description}"[:200] + more)

    def security_event(self, event_type: str, tech_info: str | None = None) -> None:
        """Record a security event (A04); the security log sends the critical ones."""
        self.security_log.record(event_type, tech_info)

    def request_restart(self) -> None:
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result("restart")

    def request_reexec(self) -> None:
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result("reexec")

    def _manufacturer_roots(self) -> list[str]:
        return self.certstore.roots_pem("ManufacturerRootCertificate")

    def _transfer_tls(self) -> ssl.SSLContext:
        """https downloads and uploads: the system's CAs plus the CSMS roots the station
        trusts (the file server is often the CSMS's own)."""
        context = ssl.create_default_context()
        roots = self.trust.csms_roots_pem()
        if roots:
            context.load_verify_locations(cadata=roots)
        return context

    async def reset_evse(self, evse_id: int) -> None:
        # An EVSE reset takes it out of service and back: the CSMS sees Unavailable, then
        # its status again (its transaction has ended and its energy is off: reset.py).
        self.station.set_operative(evse_id, False)
        await self.availability.reported(timeout=self.comm.message_timeout())
        # Back as the CSMS's settings want it: an EVSE it made Inoperative stays so.
        self.station.set_operative(evse_id, self.availability.wanted(evse_id, 1))

    async def run(self, stop: asyncio.Event) -> Outcome:
        self._outcome = asyncio.get_running_loop().create_future()
        tasks = [asyncio.ensure_future(t) for t in (
            self.link.run(), self.provisioning.run_heartbeat(), self.availability.run(),
            self.provisioning.reset.run(),
            self.outbox.run(), self.transactions.run(), self.aligned.run(),
            self.reservations.run(),
            self.certificates.run(), self.firmware.run(), self.diagnostics.run(),
            self.smart_charging.run())]
        stopper = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait({self._outcome, stopper, *tasks},
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task in done and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            outcome: Outcome = self._outcome.result() if self._outcome.done() else "stop"
        finally:
            stopper.cancel()
            await _cancel_all(tasks)
        self.bridge.close()
        self.transactions.close()
        self.smart_charging.close()
        if outcome == "stop":
            self.store.set_meta(CLEAN_STOP, "1")
        return outcome

    def status(self) -> dict[str, Any]:
        """The `station-agent sim status` document (mock hardware only)."""
        mock = self.hardware.mock
        assert mock is not None
        return build_status(self.link.connected, {
            evse_id: EvseStatus(evse.connectors[1].status, mock.snapshot(evse_id),
                                power_limit_w=self.smart_charging.power_w(evse_id),
                                transaction_id=self.transactions.transaction_id(evse_id))
            for evse_id, evse in self.station.evses.items()})

    def external_limit_ignored(self) -> str | None:
        """Why an external limit input has no effect now (None: it applies), for `sim`."""
        try:
            if self.model.get_bool("SmartChargingCtrlr", "ExternalControlSignalsEnabled"):
                return None
        except KeyError:
            pass
        return "SmartChargingCtrlr.ExternalControlSignalsEnabled is false"

    def watch_service_state(self, changed: Callable[[], None]) -> None:
        """Call `changed()` whenever what service_state() says may have changed."""
        async def opened(_session: object) -> None:
            changed()
        self.link.on_open.append(opened)
        self.link.on_close.append(changed)
        self.transactions.on_started.append(lambda *_: changed())
        self.transactions.on_ended.append(lambda _evse: changed())

    def service_state(self) -> StationState:
        """The one-line state systemd shows (`systemctl status`)."""
        active = sum(self.transactions.busy(evse_id) for evse_id in self.station.evses)
        return StationState(self.link.connected, active)

    def _offered(self, evse_id: int) -> Extras:
        """Current.Offered / Power.Offered: what the pilot offers now, and the power
        that is (nothing offered: 0, the EV may not draw)."""
        devices = self.hardware.evses[evse_id].devices
        pilot = devices.pilot
        # Not built yet while Transactions.recover() ends the transactions a power cut
        # or a Reset left open: no limit known then.
        smart = getattr(self, "smart_charging", None)
        limit_w = smart.power_w(evse_id) if smart is not None else None
        if devices.power is not None:
            # DC: the module's current set-point is the offer (0 while it is off).
            return Extras(offered_current_a=self.transactions.dc_offer_a(evse_id),
                          offered_power_w=limit_w)
        if pilot is None:
            return Extras(offered_power_w=limit_w)
        amps = pilot.offered_a or 0.0
        evse = self.station.evses[evse_id]
        return Extras(offered_current_a=amps,
                      offered_power_w=amps * evse.phases * evse.nominal_voltage_v)

    def _transaction_evse(self, transaction_id: str) -> int | None:
        return next((evse_id for evse_id, tx in self.transactions.open.items()
                     if tx.id == transaction_id), None)

    def _latest_reading(self, evse_id: int) -> Callable[[], Any]:
        meter = self.hardware.evses[evse_id].devices.meter
        return lambda: meter.latest if meter is not None else None




def _transfer(name: str) -> Callable[..., Any]:
    """agent.transfer's `name`, imported at the first call: the HTTP, FTP and TLS code
    of firmware downloads and log uploads costs memory a station without either never
    needs (download and upload are coroutine functions: the call returns the coroutine)."""
    def call(*args: Any, **kwargs: Any) -> Any:
        from agent import transfer
        return getattr(transfer, name)(*args, **kwargs)
    return call


class _FirmwareEvses:
    """The EVSEs as the firmware update sees them (FirmwareUpdate's Evses)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def busy(self, evse_id: int) -> bool:
        # A Reserved EVSE waits for its driver as a transaction does for its end, and so
        # does a driver's accepted authorization waiting for the cable (the reserved
        # driver who has just used the reservation above all).
        return self._runtime.transactions.busy(evse_id) or \
            self._runtime.transactions.authorized(evse_id) or \
            self._runtime.reservations.holds(evse_id)

    def hold(self, evse_id: int) -> None:
        if not self.busy(evse_id):
            self._runtime.station.set_operative(evse_id, False)

    def release_all(self) -> None:
        self._runtime.availability.resume_service()


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel and wait; cancel again should a library have swallowed the first one."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


async def run_daemon(config: Config, stop: asyncio.Event, clock: Clock | None = None,
                     on_frame: Callable[[str, str], None] | None = None, *,
                     on_hardware: Callable[[Hardware], None] | None = None) -> Outcome:
    """Run until `stop` is set; Reset requests rebuild the runtime in between. Returns
    "reexec" when the process must start anew (a firmware install), else "stop".

    The store, the hardware and the control socket outlive a Reset: a Reset restarts the
    agent's work, it does not unplug the vehicle.
    """
    clock = clock or SystemClock()
    store = Store.in_dir(config.storage.dir)
    log_file = attach_log_file(log_dir(config))
    hardware = build_hardware(config, clock)
    if on_hardware is not None:
        on_hardware(hardware)   # tests drive the mock's EV and reader in-process
    runtime: Runtime | None = None
    control = None
    notifier = ServiceNotifier()
    pinger: asyncio.Task[None] | None = None
    reason = ("StartupOfTheDevice", f"station-agent {__version__} started")
    reexec = False
    try:
        log.info("station-agent %s starting as %s", __version__, config.station.id)
        await hardware.start()
        if hardware.mock is not None:
            control = ControlServer(socket_path(config.storage.dir), hardware.mock,
                                    lambda: runtime.status() if runtime else {},
                                    lambda: runtime.external_limit_ignored() if runtime
                                    else None)
            await control.start()
        retries = 0   # OCPPCommCtrlr.ResetRetries left for the Reset under way
        while True:
            try:
                runtime = Runtime(config, store, clock, hardware, on_frame)
            except Exception:
                if retries <= 0:
                    raise   # out of tries (or the first start): systemd restarts us
                retries -= 1
                log.exception("Reset failed: trying again in %d s (%d more tries after "
                              "that)", RESET_RETRY_WAIT_S, retries)
                await clock.sleep(RESET_RETRY_WAIT_S)
                continue
            runtime.security_event(*reason)
            runtime.watch_service_state(notifier.changed)
            if pinger is None:
                # Ready means running (hardware up, blocks built), not connected: a
                # station offline at boot is a working station.
                notifier.ready(runtime.service_state())
                # Through the variable: a Reset puts a new Runtime there.
                pinger = asyncio.ensure_future(notifier.run(
                    lambda: cast(Runtime, runtime).service_state()))
            outcome = await runtime.run(stop)
            if outcome != "restart":
                reexec = outcome == "reexec"
                return outcome
            reason = ("ResetOrReboot", "Reset requested by the CSMS")
            retries = runtime.model.get_int("OCPPCommCtrlr", "ResetRetries")
            log.info("restarting the station's work after Reset")
    finally:
        # The same PID goes on after an exec: systemd must not wait for it to exit.
        if reexec:
            notifier.reexecuting()
        else:
            notifier.stopping()
        if pinger is not None:
            await _cancel_all([pinger])
        if control is not None:
            await control.stop()
        await hardware.stop()
        store.close()
        logging.getLogger().removeHandler(log_file)
        log_file.close()
