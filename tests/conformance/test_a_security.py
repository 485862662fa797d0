"""Part 6, A Security: the Charging Station cases of Core (Part 5), with real TLS on loopback
(the CSMS peer behind an ssl context the test controls) and the daemon in-process."""

from __future__ import annotations

import base64
import re
import ssl

from cryptography import x509

from tests.conformance.rig import STATION, run, station
from tests.conformance.tls_station import (authority, booted_on, mutual_tls_csms,
                                           network_profile, plain_csms, refusing_tls_server,
                                           renew_charging_station_certificate, security_log,
                                           station_on, tls_csms)
from tests.harness import PASSWORD

NEW_PASSWORD = "a-New-password-0002"
#: Part 6 TC_A_04: at least one of these pairs must be supported (TLS 1.2 names).
ECDSA_SUITES = ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384")
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384")


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"{STATION}:{password}".encode()).decode()


async def no_back_off_jitter(rig) -> None:
    """RetryBackOffRandomRange 0, so the next attempt comes exactly after the minimum."""
    await rig.configure({("OCPPCommCtrlr", "RetryBackOffRandomRange"): "0"})


async def reconnect_wait(rig) -> float:
    return float(await rig.get_variable("OCPPCommCtrlr", "RetryBackOffWaitMinimum"))


def test_TC_A_01(tmp_path):
    """Basic Authentication - Valid username/password combination."""
    async def case():
        async with station(tmp_path, booted=False) as rig:
            await booted_on(rig, rig.csms)                                         # step 1
            handshake = rig.link.handshake
            assert handshake.path.rsplit("/", 1)[-1] == STATION == handshake.station_id
            assert handshake.authorization == basic(PASSWORD)
            user, _, password = base64.b64decode(
                handshake.authorization.split(" ", 1)[1]).decode().partition(":")
            assert user == STATION
            assert 16 <= len(password) <= 40
            assert re.fullmatch(r"[A-Za-z0-9*\-_=:+|@.]+", password)
    run(case())


def test_TC_A_04(tmp_path):
    """TLS - server-side certificate - Valid certificate: the station does TLS 1.2 with
    each of the ECDSA AES-GCM suites (the key of the lab's server is EC), and TLS 1.3."""
    async def case():
        root = authority(tmp_path, "csms")
        async with tls_csms(*root.server(tmp_path, "server")) as csms:
            context = csms.ssl_context
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            context.set_ciphers(ECDSA_SUITES[0])
            async with station_on(tmp_path, csms, profile=2, ca=root.pem_path,
                                  booted=False) as rig:
                await booted_on(rig, csms)
                handshake = rig.link.handshake
                assert (handshake.tls_version, handshake.cipher) == ("TLSv1.2", ECDSA_SUITES[0])
                assert handshake.authorization == basic(PASSWORD)   # profile 2: Basic auth
                assert handshake.client_certificate is None         # ... and no client cert
                await no_back_off_jitter(rig)
                wait = await reconnect_wait(rig)
                # The other suite of the pair, then TLS 1.3: the station's next connections.
                for version, suite in (("TLSv1.2", ECDSA_SUITES[1]), ("TLSv1.3", None)):
                    if suite:
                        context.set_ciphers(suite)
                    else:
                        context.maximum_version = ssl.TLSVersion.TLSv1_3
                    old = rig.link
                    await old.close()
                    await rig.settle()
                    await rig.advance(wait)
                    rig.link = await csms.wait_station(STATION, after=old)
                    assert rig.link.handshake.tls_version == version
                    assert rig.link.handshake.cipher in ((suite,) if suite else TLS13_SUITES)
            assert csms.schema_errors == []
    run(case())


def _bad_certificates(tmp_path, root):
    """Part 6 runs TC_A_05 with each kind of invalid server certificate."""
    stranger = authority(tmp_path, "stranger")
    return {"unknown": stranger.server(tmp_path, "unknown"),
            "expired": root.server(tmp_path, "expired", expired=True),
            "name": root.server(tmp_path, "wrong-name", hosts=("csms.example.com",))}


async def _invalid_certificate_case(tmp_path, kind: str) -> None:
    root = authority(tmp_path, "csms")
    good = root.server(tmp_path, "server")
    bad = _bad_certificates(tmp_path, root)[kind]
    async with tls_csms(*good) as csms:
        async with station_on(tmp_path, csms, profile=2, ca=root.pem_path) as rig:
            await rig.configure({("OCPPCommCtrlr", "NetworkProfileConnectionAttempts"): "2",
                                 ("OCPPCommCtrlr", "RetryBackOffRandomRange"): "0"})
            wait = await reconnect_wait(rig)
            links = len(csms.links[STATION])
            # Booting: Reset Immediate, and the lab's server now shows the bad certificate.
            csms.ssl_context.load_cert_chain(*bad)
            assert (await rig.call("Reset", {"type": "Immediate"}))["status"] == "Accepted"
            await rig.settle()
            # Step 3: the station refused the certificate: no WebSocket came up.
            assert len(csms.links[STATION]) == links
            csms.ssl_context.load_cert_chain(*good)
            await rig.advance(wait)
            await booted_on(rig, csms)                          # steps 4-13
            event = await rig.expect("SecurityEventNotification",    # step 14
                                     where=lambda p: p["type"] == "InvalidCsmsCertificate")
            assert event["techInfo"]
        assert csms.schema_errors == []


def test_TC_A_05_unknown_certificate(tmp_path):
    """TLS - server-side certificate - Invalid certificate (issued by an unknown root)."""
    run(_invalid_certificate_case(tmp_path, "unknown"))


def test_TC_A_05_expired_certificate(tmp_path):
    """TLS - server-side certificate - Invalid certificate (expired)."""
    run(_invalid_certificate_case(tmp_path, "expired"))


def test_TC_A_05_wrong_name(tmp_path):
    """TLS - server-side certificate - Invalid certificate (not for the CSMS's host)."""
    run(_invalid_certificate_case(tmp_path, "name"))


def test_TC_A_06(tmp_path):
    """TLS - server-side certificate - TLS version too low."""
    async def case():
        root = authority(tmp_path, "csms")
        cert, key = root.server(tmp_path, "server")
        async with tls_csms(cert, key) as csms:
            port = csms.port
            async with station_on(tmp_path, csms, profile=2, ca=root.pem_path) as rig:
                await rig.configure({
                    ("OCPPCommCtrlr", "NetworkProfileConnectionAttempts"): "1",
                    ("OCPPCommCtrlr", "RetryBackOffRandomRange"): "0"})
                wait = await reconnect_wait(rig)
                await rig.shutdown()
        assert csms.schema_errors == []
        # Power on with a CSMS that only speaks TLS 1.1 at the station's URL.
        old = await refusing_tls_server(port)
        try:
            rig.csms = csms
            await rig.start(wait_booted=False)
            await rig.settle()
        finally:
            old.close()
            await old.wait_closed()
        async with tls_csms(cert, key, port=port) as csms:
            await rig.advance(wait)
            startup = await booted_on(rig, csms)                    # steps 4-14
            assert startup["type"] in ("StartupOfTheDevice", "ResetOrReboot")
            event = await rig.expect("SecurityEventNotification",   # step 16
                                     where=lambda p: p["type"] == "InvalidTLSVersion")
            assert event["techInfo"]
            assert rig.link.handshake.tls_version in ("TLSv1.2", "TLSv1.3")
            await rig.shutdown()
        assert csms.schema_errors == []
    run(case())


def test_TC_A_09(tmp_path):
    """Update Charging Station Password for HTTP Basic Authentication - Accepted."""
    async def case():
        async with station(tmp_path) as rig:
            old = rig.link
            rig.csms.passwords[STATION] = NEW_PASSWORD    # the OCTT expects the new one
            status = await rig.set_variable("SecurityCtrlr", "BasicAuthPassword", NEW_PASSWORD)
            assert status in ("Accepted", "RebootRequired")                    # step 2
            if status == "RebootRequired":
                await rig.call("Reset", {"type": "OnIdle"})
            link = await rig.new_link()                                        # step 3
            assert link is not old
            assert link.handshake.authorization == basic(NEW_PASSWORD)
            if status == "RebootRequired":                                     # steps 5-8
                await rig.expect("BootNotification")
            # Nothing refused on the way: every attempt came with the new password.
            assert len(rig.csms.links[STATION]) == 2
            # "... and log the new BasicAuthPassword": the change is in the security log,
            # the password itself nowhere in it.
            events = security_log(rig)
            assert any(kind == "ReconfigurationOfSecurityParameters" and "BasicAuthPassword"
                       in (info or "") for kind, info in events), events
            assert not any(NEW_PASSWORD in (info or "") for _, info in events)
    run(case())


def test_TC_A_10(tmp_path):
    """Update Charging Station Password for HTTP Basic Authentication - Rejected."""
    async def case():
        async with station(tmp_path) as rig:
            answer = await rig.call("SetVariables", {"setVariableData": [{
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
                "attributeValue": "short-pass-15ch"}]})
            result = answer["setVariableResult"][0]
            assert result["attributeStatus"] == "Rejected"                     # step 2
            assert "short-pass-15ch" not in str(result)
            await rig.power_cycle()                                            # step 5
            # Step 3 and the post scenario validation: the configured password stays.
            assert rig.link.handshake.authorization == basic(PASSWORD)
    run(case())


def test_TC_A_19(tmp_path):
    """Upgrade Charging Station Security Profile - Accepted (from profile 1 to 2)."""
    async def case():
        root = authority(tmp_path, "csms")
        async with plain_csms() as plain, tls_csms(*root.server(tmp_path, "server")) as tls:
            async with station_on(tmp_path, plain, profile=1) as rig:
                # Memory state CertificateInstalled (profile 1: the CSMS root).
                answer = await rig.call("InstallCertificate", {
                    "certificateType": "CSMSRootCertificate", "certificate": root.pem})
                assert answer["status"] == "Accepted"
                answer = await rig.call("SetNetworkProfile", network_profile(2, tls.url, 2))
                assert answer["status"] == "Accepted"                          # step 2
                status = await rig.set_variable("OCPPCommCtrlr",
                                                "NetworkConfigurationPriority", "2,1")
                assert status in ("Accepted", "RebootRequired")                # step 4
                if status == "RebootRequired":
                    answer = await rig.call("Reset", {"type": "OnIdle"})
                    assert answer["status"] == "Accepted"                      # step 6
                await booted_on(rig, tls)                                      # steps 7-9
                handshake = rig.link.handshake
                assert handshake.tls_version in ("TLSv1.2", "TLSv1.3")
                assert handshake.authorization == basic(PASSWORD)
                assert await rig.get_variable("SecurityCtrlr", "SecurityProfile") == "2"
                priority = await rig.get_variable("OCPPCommCtrlr",
                                                  "NetworkConfigurationPriority")
                assert "1" not in priority.split(","), priority                # step 13
                assert priority.split(",")[0] == "2"
                assert await rig.get_variable("OCPPCommCtrlr", "ActiveNetworkProfile") == "2"
                # The upgrade holds after a power cycle: back to the TLS CSMS.
                await rig.shutdown()
                await rig.start(wait_booted=False)
                await booted_on(rig, tls)
                assert rig.link.handshake.tls_version is not None
            assert plain.schema_errors == [] and tls.schema_errors == []
    run(case())


def test_TC_A_19_from_profile_2(tmp_path):
    """Upgrade Charging Station Security Profile - Accepted (from profile 2 to 3, after
    RenewChargingStationCertificate)."""
    async def case():
        root = authority(tmp_path, "csms")
        server = root.server(tmp_path, "server")
        async with tls_csms(*server) as tls, mutual_tls_csms(*server, root.pem_path) as mutual:
            async with station_on(tmp_path, tls, profile=2, ca=root.pem_path) as rig:
                leaf = await renew_charging_station_certificate(rig, root)
                answer = await rig.call("SetNetworkProfile", network_profile(2, mutual.url, 3))
                assert answer["status"] == "Accepted"                          # step 2
                status = await rig.set_variable("OCPPCommCtrlr",
                                                "NetworkConfigurationPriority", "2,1")
                assert status in ("Accepted", "RebootRequired")                # step 4
                if status == "RebootRequired":
                    answer = await rig.call("Reset", {"type": "OnIdle"})
                    assert answer["status"] == "Accepted"                      # step 6
                await booted_on(rig, mutual)                                   # steps 7-9
                handshake = rig.link.handshake
                assert handshake.authorization is None      # profile 3: no Basic auth
                presented = x509.load_der_x509_certificate(handshake.client_certificate)
                assert presented.serial_number == leaf.serial_number
                assert await rig.get_variable("SecurityCtrlr", "SecurityProfile") == "3"
                priority = await rig.get_variable("OCPPCommCtrlr",
                                                  "NetworkConfigurationPriority")
                assert "1" not in priority.split(","), priority                # step 13
            assert tls.schema_errors == [] and mutual.schema_errors == []
    run(case())


def test_TC_A_20(tmp_path):
    """Upgrade Charging Station Security Profile - No valid CSMSRootCertificate installed."""
    async def case():
        root = authority(tmp_path, "csms")
        async with plain_csms() as plain, tls_csms(*root.server(tmp_path, "server")) as tls:
            async with station_on(tmp_path, plain, profile=1) as rig:
                ids = await rig.call("GetInstalledCertificateIds",
                                     {"certificateType": ["CSMSRootCertificate"]})
                assert ids["status"] == "NotFound"                     # the prerequisite
                answer = await rig.call("SetNetworkProfile", network_profile(2, tls.url, 2))
                assert answer["status"] == "Accepted"                          # step 2
                answer = await rig.call("SetVariables", {"setVariableData": [{
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "NetworkConfigurationPriority"},
                    "attributeValue": "2,1"}]})
                result = answer["setVariableResult"][0]
                assert result["attributeStatus"] == "Rejected"                 # step 4
                assert result["attributeStatusInfo"]["reasonCode"]
                # Nothing changed: a power cycle comes back on profile 1, slot 1.
                assert await rig.get_variable("OCPPCommCtrlr",
                                              "NetworkConfigurationPriority") == "1"
                await rig.power_cycle()
                assert rig.link.handshake.tls_version is None
                assert await rig.get_variable("SecurityCtrlr", "SecurityProfile") == "1"
            assert not tls.links.get(STATION)
            assert plain.schema_errors == []
    run(case())


def test_TC_A_22(tmp_path):
    """Upgrade Charging Station Security Profile - Downgrade security profile - Rejected."""
    async def case():
        root = authority(tmp_path, "csms")
        async with tls_csms(*root.server(tmp_path, "server")) as tls, plain_csms() as plain:
            async with station_on(tmp_path, tls, profile=2, ca=root.pem_path) as rig:
                answer = await rig.call("SetNetworkProfile", network_profile(2, plain.url, 1))
                assert answer["status"] == "Rejected"                          # step 2
                assert await rig.get_variable("SecurityCtrlr", "SecurityProfile") == "2"
            assert not plain.links.get(STATION)
            assert tls.schema_errors == []
    run(case())

