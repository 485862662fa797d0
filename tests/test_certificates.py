"""The certificates block: InstallCertificate, GetInstalledCertificateIds, DeleteCertificate
(M05, M03, M04), CertificateSigned and the SignCertificate rounds (A02, A03).

The block on a real router, device model and certificate store, with a fake link playing
the CSMS (its CA signs with certs/dev_pki.py) and a ManualClock: no sleeps. Every request
and response is checked against the official OCPP 2.0.1 schemas of the `ocpp` package.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from ocpp.messages import MessageType, get_validator

from agent.blocks.certificates import Certificates
from agent.blocks.remote_control import RemoteControl
from agent.clock import ManualClock
from agent.config import CsmsConfig
from agent.hardware import Hardware
from agent.model.definitions import standard_definitions
from agent.model.device_model import DeviceModel
from agent.model.types import Component, EvseSpec, StationSpec, Variable
from agent.ocpp.session import CallTimeout, Reply, Router
from agent.pki.certstore import CertificateStore
from agent.pki.checks import fingerprint, hash_data, parse_certificates
from agent.station import Station
from agent.trust import StationTrust
from agent.store import Store
from certs import dev_pki

STATION = "CS-001"
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)   # ManualClock's default start
DAY = 86400.0


def run(coro: Any, timeout: float = 20) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


def pem(*certs: x509.Certificate) -> str:
    return dev_pki.pem(*certs).decode("ascii")


def valid(days: float = 365) -> dict[str, datetime]:
    return {"not_before": NOW - timedelta(days=1), "not_after": NOW + timedelta(days=days)}


def spki(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


class FakeLink:
    """The CSMS side of SignCertificate: records each request, answers as told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], bool]] = []
        self.answer: dict[str, Any] = {"status": "Accepted"}
        self.fail: Exception | None = None

    async def call(self, action: str, payload: dict[str, Any], *, before_accepted: bool = False,
                   wait: bool = True, timeout: float | None = None) -> dict[str, Any]:
        get_validator(MessageType.Call, action, "2.0.1").validate(payload)
        self.calls.append((action, payload, before_accepted))
        if self.fail is not None:
            raise self.fail
        get_validator(MessageType.CallResult, action, "2.0.1").validate(self.answer)
        return self.answer

    def csrs(self) -> list[x509.CertificateSigningRequest]:
        return [x509.load_pem_x509_csr(p["csr"].encode()) for a, p, _ in self.calls
                if a == "SignCertificate"]


class Env:
    def __init__(self, tmp_path: Path, profile: int = 1, max_entries: int = 24,
                 **kwargs: Any) -> None:
        self.clock = ManualClock()
        self.db = Store(tmp_path / "station-agent.db")
        spec = StationSpec(vendor="Example", model="AC-22", serial_number="0001",
                           firmware_version="1.0.0", evses=(EvseSpec(1, 32, 3, 230),),
                           security_profile=profile, organization_name="Example CSO",
                           identity=STATION)
        self.model = DeviceModel(self.db, standard_definitions(spec))
        self.router = Router()
        self.link = FakeLink()
        self.certstore = CertificateStore(tmp_path / "certs", max_entries=max_entries)
        self.events: list[tuple[str, str | None]] = []
        self.new_certificates = 0
        self.profile = profile
        self.root, self.root_key = dev_pki.make_root("CSMS Root", **valid(3650))
        self.block = Certificates(
            self.router, self.link, self.model, self.clock, self.certstore, STATION,
            security_event=lambda kind, info: self.events.append((kind, info)),
            on_new_station_certificate=self._new_certificate,
            security_profile=lambda: self.profile, **kwargs)

    def _new_certificate(self) -> None:
        self.new_certificates += 1

    def set(self, variable: str, value: str) -> None:
        assert self.model.set(Component("SecurityCtrlr"), Variable(variable), value).status \
            == "Accepted"

    async def handle(self, action: str, request: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """(response payload, follow-up or None), both schemas checked."""
        get_validator(MessageType.Call, action, "2.0.1").validate(request)
        answer = await self.router.routes[action].handler(request)
        payload, then = (answer.payload, answer.then) if isinstance(answer, Reply) else (
            answer, None)
        get_validator(MessageType.CallResult, action, "2.0.1").validate(payload)
        return payload, then

    async def ask(self, action: str, request: dict[str, Any]) -> dict[str, Any]:
        payload, then = await self.handle(action, request)
        if then is not None:
            await then()
        return payload

    def sign(self, csr: x509.CertificateSigningRequest, cn: str = STATION,
             days: float = 365) -> x509.Certificate:
        return dev_pki.issue(self.root, self.root_key, cn, csr.public_key(), client=True,
                             **valid(days))

    def close(self) -> None:
        self.db.close()


@pytest.fixture
def env(tmp_path: Path):
    e = Env(tmp_path)
    yield e
    e.close()


def kinds(env: Env) -> list[str]:
    return [kind for kind, _ in env.events]


# -- InstallCertificate (M05) ---------------------------------------------------------------

def test_install_accepted_counted_and_reported_as_a_security_event(env: Env) -> None:
    async def main() -> None:
        request = {"certificateType": "CSMSRootCertificate", "certificate": pem(env.root)}
        assert await env.ask("InstallCertificate", request) == {"status": "Accepted"}
        assert kinds(env) == ["ReconfigurationOfSecurityParameters"]
        assert env.model.get_int("SecurityCtrlr", "CertificateEntries") == 1
        # The same root again: Accepted, no change, no event.
        assert await env.ask("InstallCertificate", request) == {"status": "Accepted"}
        assert kinds(env) == ["ReconfigurationOfSecurityParameters"]
        assert env.model.get(Component("SecurityCtrlr"),
                             Variable("CertificateEntries")).value == "1"
    run(main())


@pytest.mark.parametrize("case", ["garbage", "leaf", "expired", "not-yet-valid", "two"])
def test_install_rejected_with_invalid_certificate(env: Env, case: str) -> None:
    async def main() -> None:
        if case == "garbage":
            text = "-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----"
        elif case == "leaf":
            text = pem(dev_pki.issue(env.root, env.root_key, "leaf",
                                     dev_pki.new_key().public_key(), **valid()))
        elif case == "expired":
            text = pem(dev_pki.make_root("Old", not_before=NOW - timedelta(days=9),
                                         not_after=NOW - timedelta(days=1))[0])
        elif case == "not-yet-valid":
            text = pem(dev_pki.make_root("Early", not_before=NOW + timedelta(days=1),
                                         not_after=NOW + timedelta(days=9))[0])
        else:
            text = pem(env.root, dev_pki.make_root("Other", **valid())[0])
        answer = await env.ask("InstallCertificate",
                               {"certificateType": "ManufacturerRootCertificate",
                                "certificate": text})
        assert answer["status"] == "Rejected"
        assert answer["statusInfo"]["reasonCode"] == "InvalidCertificate"
        assert answer["statusInfo"]["additionalInfo"]
        assert env.events == []
        assert env.model.get_int("SecurityCtrlr", "CertificateEntries") == 0
    run(main())


def test_install_failed_when_the_store_is_full(tmp_path: Path) -> None:
    async def main() -> None:
        env = Env(tmp_path, max_entries=1)
        try:
            assert (await env.ask("InstallCertificate", {
                "certificateType": "CSMSRootCertificate", "certificate": pem(env.root)})
                )["status"] == "Accepted"
            answer = await env.ask("InstallCertificate", {
                "certificateType": "V2GRootCertificate",
                "certificate": pem(dev_pki.make_root("V2G", **valid())[0])})
            assert answer["status"] == "Failed"
            assert answer["statusInfo"]["reasonCode"] == "OutOfStorage"
        finally:
            env.close()
    run(main())


# -- GetInstalledCertificateIds (M03) -------------------------------------------------------

def test_get_installed_certificate_ids(env: Env) -> None:
    async def main() -> None:
        assert await env.ask("GetInstalledCertificateIds", {}) == {"status": "NotFound"}
        manufacturer, _ = dev_pki.make_root("Manufacturer", **valid())
        for use, cert in (("CSMSRootCertificate", env.root),
                          ("ManufacturerRootCertificate", manufacturer)):
            await env.ask("InstallCertificate", {"certificateType": use,
                                                 "certificate": pem(cert)})
        every = await env.ask("GetInstalledCertificateIds", {})
        assert every == {"status": "Accepted", "certificateHashDataChain": [
            {"certificateType": "CSMSRootCertificate",
             "certificateHashData": hash_data(env.root, env.root)},
            {"certificateType": "ManufacturerRootCertificate",
             "certificateHashData": hash_data(manufacturer, manufacturer)}]}
        only = await env.ask("GetInstalledCertificateIds",
                             {"certificateType": ["ManufacturerRootCertificate"]})
        assert only["certificateHashDataChain"] == every["certificateHashDataChain"][1:]
        assert await env.ask("GetInstalledCertificateIds", {
            "certificateType": ["V2GRootCertificate", "V2GCertificateChain"]}) == {
            "status": "NotFound"}
    run(main())


# -- DeleteCertificate (M04) ------------------------------------------------------------------

@pytest.mark.parametrize("profile,status", [(1, "Accepted"), (2, "Failed"), (3, "Failed")])
def test_delete_the_last_csms_root(tmp_path: Path, profile: int, status: str) -> None:
    async def main() -> None:
        env = Env(tmp_path, profile=profile)
        try:
            await env.ask("InstallCertificate", {"certificateType": "CSMSRootCertificate",
                                                 "certificate": pem(env.root)})
            env.events.clear()
            answer = await env.ask("DeleteCertificate", {
                "certificateHashData": hash_data(env.root, env.root)})
            assert answer["status"] == status
            assert env.certstore.count() == (0 if status == "Accepted" else 1)
            assert kinds(env) == (["ReconfigurationOfSecurityParameters"]
                                  if status == "Accepted" else [])
        finally:
            env.close()
    run(main())


# -- the roots of the config's csms.ca_file: listed, counted, withdrawn -------------------

class ConfiguredEnv(Env):
    """Env whose station also trusts the roots an installer put in csms.ca_file, wired
    as the daemon wires it (StationTrust over the same store)."""

    def __init__(self, tmp_path: Path, *configured: x509.Certificate, profile: int = 2) -> None:
        self.ca_file = tmp_path / "csms-ca.pem"
        if configured:
            # As installers write them: a comment, and a root twice (it counts once).
            self.ca_file.write_text("# CSMS roots\n" + "".join(
                pem(c) for c in configured + configured[:1]))
        self.tmp_path = tmp_path
        super().__init__(tmp_path, profile=profile,
                         configured_roots=lambda: self.trust.configured_roots())
        self.trust = StationTrust(CsmsConfig("wss://csms.example/ocpp", profile, "x" * 16,
                                             self.ca_file, None, None), self.certstore)

    def restart(self) -> None:
        """The station again from the same storage and config: the store reopened."""
        self.close()
        ConfiguredEnv.__init__(self, self.tmp_path, profile=self.profile)

    def trusted(self) -> set[str]:
        """Fingerprints of what the TLS connection to the CSMS trusts."""
        roots = self.trust.csms_roots_pem()
        return {fingerprint(c) for c in parse_certificates(roots)} if roots else set()

    async def listed(self) -> list[dict[str, Any]]:
        answer = await self.ask("GetInstalledCertificateIds",
                                {"certificateType": ["CSMSRootCertificate"]})
        return answer.get("certificateHashDataChain", [])

    def entries(self) -> str:
        return self.model.get_str("SecurityCtrlr", "CertificateEntries")


def csms_entry(cert: x509.Certificate, issuer: x509.Certificate | None = None) -> dict[str, Any]:
    return {"certificateType": "CSMSRootCertificate",
            "certificateHashData": hash_data(cert, issuer or cert)}


def test_config_roots_are_listed_and_counted_like_installed_ones(tmp_path: Path) -> None:
    async def main() -> None:
        env = ConfiguredEnv(tmp_path, *[dev_pki.make_root("Config Root", **valid())[0]])
        configured = parse_certificates(env.ca_file.read_text())[0]
        try:
            # A fresh station: its one root, from the config, with the hash data of M03.
            assert await env.ask("GetInstalledCertificateIds", {}) == {
                "status": "Accepted", "certificateHashDataChain": [csms_entry(configured)]}
            assert env.entries() == "1"
            # Installed over OCPP as well: still one root, listed once.
            await env.ask("InstallCertificate", {"certificateType": "CSMSRootCertificate",
                                                 "certificate": pem(configured)})
            assert await env.listed() == [csms_entry(configured)]
            assert env.entries() == "1"
            await env.ask("InstallCertificate", {"certificateType": "CSMSRootCertificate",
                                                 "certificate": pem(env.root)})
            assert sorted(map(str, await env.listed())) == sorted(
                map(str, [csms_entry(configured), csms_entry(env.root)]))
            assert env.entries() == "2"
            # Not a CSMS root: none of them is another type.
            assert await env.ask("GetInstalledCertificateIds", {
                "certificateType": ["ManufacturerRootCertificate"]}) == {"status": "NotFound"}
        finally:
            env.close()
    run(main())


def test_a_sub_ca_in_ca_file_is_listed_with_its_issuers_key(tmp_path: Path) -> None:
    async def main() -> None:
        root, root_key = dev_pki.make_root("Config Root", **valid())
        sub = dev_pki.issue(root, root_key, "Config Sub-CA", dev_pki.new_key().public_key(),
                            ca=True, **valid())
        env = ConfiguredEnv(tmp_path, root, sub)
        try:
            assert await env.listed() == [csms_entry(root), csms_entry(sub, root)]
            answer = await env.ask("DeleteCertificate",
                                   {"certificateHashData": hash_data(sub, root)})
            assert answer["status"] == "Accepted"
            assert await env.listed() == [csms_entry(root)]
        finally:
            env.close()
    run(main())


def test_deleting_a_config_root_withdraws_it_for_good(tmp_path: Path) -> None:
    async def main() -> None:
        old, _ = dev_pki.make_root("Old CSMS Root", **valid())
        new, _ = dev_pki.make_root("New CSMS Root", **valid())
        env = ConfiguredEnv(tmp_path, old, new)
        config_text = env.ca_file.read_bytes()
        try:
            env.events.clear()
            answer = await env.ask("DeleteCertificate",
                                   {"certificateHashData": hash_data(old, old, "SHA384")})
            assert answer == {"status": "Accepted"}
            assert kinds(env) == ["ReconfigurationOfSecurityParameters"]
            assert await env.listed() == [csms_entry(new)]
            assert env.entries() == "1"
            assert env.trusted() == {fingerprint(new)}     # the next TLS handshake
            assert env.ca_file.read_bytes() == config_text  # the installer's file untouched
            record = tmp_path / "certs" / "withdrawn" / f"{fingerprint(old)}.pem"
            assert record.stat().st_mode & 0o777 == 0o600
            # Again: nothing left to delete.
            answer = await env.ask("DeleteCertificate",
                                   {"certificateHashData": hash_data(old, old)})
            assert answer["status"] == "NotFound"
            env.restart()
            assert await env.listed() == [csms_entry(new)]
            assert env.trusted() == {fingerprint(new)}
            assert env.entries() == "1"
        finally:
            env.close()
    run(main())


def test_a_withdrawal_survives_kill_9(tmp_path: Path) -> None:
    """The DeleteCertificate in a process killed right after its answer: the withdrawal
    is on disk (written and fsynced before the answer), the next start trusts the root
    no more."""
    old, _ = dev_pki.make_root("Old CSMS Root", **valid())
    new, _ = dev_pki.make_root("New CSMS Root", **valid())
    ca_file = tmp_path / "csms-ca.pem"
    ca_file.write_text(pem(old) + pem(new))
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from agent.config import CsmsConfig
        from agent.pki.checks import hash_data, parse_certificates
        from agent.pki.lazy import LazyCertificateStore
        from agent.trust import StationTrust
        store = LazyCertificateStore(Path({str(tmp_path / "certs")!r}))
        trust = StationTrust(CsmsConfig("wss://x/ocpp", 2, None, Path({str(ca_file)!r}),
                                        None, None), store)
        old = parse_certificates(Path({str(ca_file)!r}).read_text())[0]
        outcome = store.delete(hash_data(old, old), keep_last_csms_root=True,
                               configured=trust.configured_roots())
        print(outcome.status, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.split() == ["Accepted"]
    store = CertificateStore(tmp_path / "certs")
    trust = StationTrust(CsmsConfig("wss://x/ocpp", 2, None, ca_file, None, None), store)
    assert [fingerprint(c) for c in parse_certificates(trust.csms_roots_pem())] == [
        fingerprint(new)]
    assert store.installed(configured=trust.configured_roots()) == [csms_entry(new)]


@pytest.mark.parametrize("profile,status", [(1, "Accepted"), (2, "Failed"), (3, "Failed")])
def test_the_last_root_trusted_is_kept_whatever_its_source(tmp_path: Path, profile: int,
                                                          status: str) -> None:
    async def main() -> None:
        configured, _ = dev_pki.make_root("Config Root", **valid())
        env = ConfiguredEnv(tmp_path, configured, profile=profile)
        try:
            answer = await env.ask("DeleteCertificate",
                                   {"certificateHashData": hash_data(configured, configured)})
            assert answer["status"] == status
            assert env.trusted() == (set() if status == "Accepted" else {fingerprint(configured)})
            if status == "Accepted":
                # Profile 1: it went, and a profile-2 slot now lacks a root (TC_A_20).
                assert await env.listed() == []
                assert not env.trust.has_csms_root()
                return
            assert await env.listed() == [csms_entry(configured)]
            # With a successor installed the config's root may go, and then the installed
            # one is the last.
            await env.ask("InstallCertificate", {"certificateType": "CSMSRootCertificate",
                                                 "certificate": pem(env.root)})
            answer = await env.ask("DeleteCertificate",
                                   {"certificateHashData": hash_data(configured, configured)})
            assert answer["status"] == "Accepted"
            answer = await env.ask("DeleteCertificate",
                                   {"certificateHashData": hash_data(env.root, env.root)})
            assert answer["status"] == "Failed"
            assert env.trusted() == {fingerprint(env.root)}
        finally:
            env.close()
    run(main())


def test_a_root_both_configured_and_installed_goes_from_both(tmp_path: Path) -> None:
    async def main() -> None:
        both, _ = dev_pki.make_root("Both", **valid())
        other, _ = dev_pki.make_root("Other", **valid())
        env = ConfiguredEnv(tmp_path, both, other)
        try:
            await env.ask("InstallCertificate", {"certificateType": "CSMSRootCertificate",
                                                 "certificate": pem(both)})
            answer = await env.ask("DeleteCertificate",
                                   {"certificateHashData": hash_data(both, both)})
            assert answer["status"] == "Accepted"
            assert env.trusted() == {fingerprint(other)}
            assert await env.listed() == [csms_entry(other)]
            assert env.certstore.roots("CSMSRootCertificate") == []
        finally:
            env.close()
    run(main())


def test_a_new_root_in_ca_file_is_trusted_after_a_withdrawal(tmp_path: Path) -> None:
    # The withdrawal is by hash: the installer's replacement is another certificate.
    async def main() -> None:
        old, _ = dev_pki.make_root("CSMS Root 2025", **valid())
        spare, _ = dev_pki.make_root("Spare", **valid())
        env = ConfiguredEnv(tmp_path, old, spare)
        try:
            answer = await env.ask("DeleteCertificate",
                                   {"certificateHashData": hash_data(old, old)})
            assert answer["status"] == "Accepted"
            replacement, _ = dev_pki.make_root("CSMS Root 2025", **valid())   # same name
            env.ca_file.write_text(pem(old) + pem(replacement))   # old one left in by mistake
            assert env.trusted() == {fingerprint(replacement)}
            assert await env.listed() == [csms_entry(replacement)]
        finally:
            env.close()
    run(main())


def test_delete_unknown_is_not_found(env: Env) -> None:
    async def main() -> None:
        other, _ = dev_pki.make_root("Unknown", **valid())
        answer = await env.ask("DeleteCertificate",
                               {"certificateHashData": hash_data(other, other, "SHA512")})
        assert answer["status"] == "NotFound"
    run(main())


# -- the signing round and CertificateSigned (A02/A03) --------------------------------------

async def _install_root(env: Env) -> None:
    await env.ask("InstallCertificate", {"certificateType": "CSMSRootCertificate",
                                         "certificate": pem(env.root)})
    env.events.clear()


def test_sign_and_accept(env: Env) -> None:
    async def main() -> None:
        await _install_root(env)
        round_ = env.block.start_round()
        await settle()
        assert [(a, p["certificateType"], b) for a, p, b in env.link.calls] == [
            ("SignCertificate", "ChargingStationCertificate", False)]
        csr = env.link.csrs()[0]
        assert csr.is_signature_valid
        assert csr.subject.rfc4514_string() == f"O=Example CSO,CN={STATION}"
        leaf = env.sign(csr)
        payload, then = await env.handle("CertificateSigned", {
            "certificateChain": pem(leaf), "certificateType": "ChargingStationCertificate"})
        assert payload == {"status": "Accepted"}
        # The daemon hears of the new certificate only once the answer is on the wire.
        assert env.new_certificates == 0 and then is not None
        await then()
        assert env.new_certificates == 1
        assert await round_ is True
        assert kinds(env) == ["ReconfigurationOfSecurityParameters"]
        chain_path, _ = env.certstore.station_credentials()
        assert x509.load_pem_x509_certificate(chain_path.read_bytes()) == leaf
        # Delivered twice (the CSMS retrying): Accepted, nothing new.
        payload, then = await env.handle("CertificateSigned", {"certificateChain": pem(leaf)})
        assert payload == {"status": "Accepted"} and then is None
        assert env.new_certificates == 1
    run(main())


def test_invalid_certificate_signed_is_rejected_with_a_security_event(env: Env) -> None:
    async def main() -> None:
        await _install_root(env)
        round_ = env.block.start_round()
        await settle()
        wrong = env.sign(env.link.csrs()[0], cn="CS-999")
        payload, then = await env.handle("CertificateSigned", {"certificateChain": pem(wrong)})
        assert payload["status"] == "Rejected" and then is None
        assert payload["statusInfo"]["reasonCode"] == "InvalidCertificate"
        assert "CS-999" in payload["statusInfo"]["additionalInfo"]
        assert kinds(env) == ["InvalidChargingStationCertificate"]
        assert len(env.events[0][1]) <= 255
        assert env.new_certificates == 0
        assert env.certstore.station_credentials() is None
        assert await round_ is False        # answered: the round is over
        assert len(env.link.calls) == 1
    run(main())


def test_v2g_certificate_is_rejected_without_a_security_event(env: Env) -> None:
    async def main() -> None:
        await _install_root(env)
        env.block.start_round()
        await settle()
        leaf = env.sign(env.link.csrs()[0])
        payload, _ = await env.handle("CertificateSigned", {
            "certificateChain": pem(leaf), "certificateType": "V2GCertificate"})
        assert payload["status"] == "Rejected"
        assert payload["statusInfo"]["reasonCode"] == "UnsupportedRequest"
        assert env.events == []
        assert env.block.signing, "still waiting for the station certificate"
        payload, _ = await env.handle("CertificateSigned", {"certificateChain": pem(leaf)})
        assert payload == {"status": "Accepted"}
    run(main())


def test_repeats_double_the_wait_then_give_up(env: Env) -> None:
    """TC_A_23: CertSigningWaitMinimum W, CertSigningRepeatTimes 1: a second request after
    W, none after 2W more."""
    async def main() -> None:
        env.set("CertSigningWaitMinimum", "60")
        env.set("CertSigningRepeatTimes", "1")
        round_ = env.block.start_round()
        await settle()
        assert len(env.link.calls) == 1
        await env.clock.advance(59)
        assert len(env.link.calls) == 1
        await env.clock.advance(1)
        assert len(env.link.calls) == 2
        await env.clock.advance(119)
        assert len(env.link.calls) == 2 and not round_.done()
        await env.clock.advance(1)
        assert round_.done() and round_.result() is False
        await env.clock.advance(10 * DAY)
        assert len(env.link.calls) == 2
        # The repeat is a new CSR for the same key, so a late certificate still fits.
        first, second = env.link.csrs()
        assert first.public_bytes(serialization.Encoding.PEM) != second.public_bytes(
            serialization.Encoding.PEM)
        assert spki(first.public_key()) == spki(second.public_key())
        await _install_root(env)
        payload, _ = await env.handle("CertificateSigned",
                                      {"certificateChain": pem(env.sign(first))})
        assert payload == {"status": "Accepted"}
    run(main())


def test_three_repeats_at_w_2w_4w(env: Env) -> None:
    async def main() -> None:
        env.set("CertSigningWaitMinimum", "10")
        env.set("CertSigningRepeatTimes", "3")
        round_ = env.block.start_round()
        await settle()
        sent_at = [0.0]
        elapsed = 0.0
        while not round_.done():
            await env.clock.advance(1)
            elapsed += 1
            if len(env.link.calls) > len(sent_at):
                sent_at.append(elapsed)
        assert sent_at == [0, 10, 30, 70]
        assert elapsed == 150 and round_.result() is False
    run(main())


def test_a_certificate_during_the_wait_ends_the_round(env: Env) -> None:
    async def main() -> None:
        await _install_root(env)
        round_ = env.block.start_round()
        await settle()
        await env.clock.advance(30)
        await env.ask("CertificateSigned",
                      {"certificateChain": pem(env.sign(env.link.csrs()[0]))})
        await settle()
        assert round_.done() and round_.result() is True
        await env.clock.advance(DAY)
        assert len(env.link.calls) == 1
    run(main())


def test_sign_certificate_rejected_ends_the_round(env: Env) -> None:
    async def main() -> None:
        env.link.answer = {"status": "Rejected", "statusInfo": {"reasonCode": "InvalidCSR"}}
        round_ = env.block.start_round()
        await settle()
        assert round_.done() and round_.result() is False
        await env.clock.advance(DAY)
        assert len(env.link.calls) == 1
    run(main())


def test_an_unanswered_sign_certificate_counts_as_an_attempt(env: Env) -> None:
    async def main() -> None:
        env.set("CertSigningRepeatTimes", "1")
        env.link.fail = CallTimeout("SignCertificate: no answer within 30 s")
        round_ = env.block.start_round()
        await settle()
        env.link.fail = None
        await env.clock.advance(60)
        assert len(env.link.calls) == 2
        await _install_root(env)
        await env.ask("CertificateSigned",
                      {"certificateChain": pem(env.sign(env.link.csrs()[1]))})
        await settle()
        assert round_.result() is True
    run(main())


def test_trigger_message_starts_a_round_even_before_acceptance(env: Env) -> None:
    async def main() -> None:
        remote = RemoteControl(env.router, Station([]), Hardware({}), clock=env.clock)
        remote.register("SignChargingStationCertificate", env.block.trigger_sign_certificate)
        payload, then = await env.handle("TriggerMessage",
                                          {"requestedMessage": "SignChargingStationCertificate"})
        assert payload == {"status": "Accepted"}
        assert env.link.calls == []      # F06.FR.04: only after the answer
        await then()
        await settle()
        assert [(a, b) for a, _, b in env.link.calls] == [("SignCertificate", True)]
        # A second trigger replaces the round: a new key.
        await (await env.handle("TriggerMessage",
                                {"requestedMessage": "SignChargingStationCertificate"}))[1]()
        await settle()
        first, second = env.link.csrs()
        assert spki(first.public_key()) != spki(second.public_key())
        await _install_root(env)
        late, _ = await env.handle("CertificateSigned",
                                   {"certificateChain": pem(env.sign(first))})
        assert late["status"] == "Rejected"
        assert "key does not match" in late["statusInfo"]["additionalInfo"]
    run(main())


# -- renewal (A03) ----------------------------------------------------------------------------

async def _station_certificate(env: Env, days: float) -> None:
    await _install_root(env)
    round_ = env.block.start_round()
    await settle()
    await env.ask("CertificateSigned",
                  {"certificateChain": pem(env.sign(env.link.csrs()[-1], days=days))})
    assert await round_ is True
    env.link.calls.clear()
    env.events.clear()


def test_renewal_within_30_days_of_expiry_checked_daily(env: Env) -> None:
    async def main() -> None:
        await _station_certificate(env, days=40)
        runner = asyncio.ensure_future(env.block.run())
        await settle()
        assert env.link.calls == []               # 40 days left
        await env.clock.advance(9 * DAY)
        assert env.link.calls == []               # 31 days left
        await env.clock.advance(DAY)
        assert len(env.link.calls) == 1           # 30 days left: renew
        assert env.link.calls[0][2] is False      # waits for BootNotification Accepted
        await env.ask("CertificateSigned",
                      {"certificateChain": pem(env.sign(env.link.csrs()[0], days=400))})
        await settle()
        assert env.certstore.station_certificate_expiry() == NOW + timedelta(days=400)
        await env.clock.advance(30 * DAY)
        assert len(env.link.calls) == 1
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    run(main())


def test_renewal_retries_the_next_day_after_a_failed_round(env: Env) -> None:
    async def main() -> None:
        await _station_certificate(env, days=10)
        env.set("CertSigningRepeatTimes", "0")
        runner = asyncio.ensure_future(env.block.run())
        await settle()
        assert len(env.link.calls) == 1
        await env.clock.advance(DAY - 1)
        assert len(env.link.calls) == 1
        await env.clock.advance(1)
        assert len(env.link.calls) == 2
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        assert not env.block.signing, "stopping run() ends its round"
    run(main())


def test_no_certificate_no_renewal_unless_another_source_says_so(tmp_path: Path) -> None:
    async def main() -> None:
        plain = Env(tmp_path / "a")
        configured = Env(tmp_path / "b",
                         station_certificate_expiry=lambda: NOW + timedelta(days=5))
        try:
            runners = [asyncio.ensure_future(e.block.run()) for e in (plain, configured)]
            await settle()
            await plain.clock.advance(3 * DAY)
            assert plain.link.calls == []
            assert len(configured.link.calls) == 1
            for r in runners:
                r.cancel()
            await asyncio.gather(*runners, return_exceptions=True)
        finally:
            plain.close()
            configured.close()
    run(main())
