"""Security profiles 1-3 on the real agent process against TLS CSMS peers on 127.0.0.1:
mutual TLS, upgrades through SetNetworkProfile, refusals, fall-back, a new password."""

import asyncio
import ssl

from cryptography import x509
from cryptography.x509.oid import NameOID

from agent.demo.csms import Csms
from tests.harness import PASSWORD, AgentProcess
from tests.tls_certs import make_ca_and_server, make_client

STATION = "CS-SEC"
NEW_PASSWORD = "a-brand-new-password-02"


def config(directory, url, profile, *, ca=None, cert=None, key=None, password=PASSWORD):
    lines = [f'url = "{url}"', f"security_profile = {profile}"]
    if password:
        lines.append(f'password = "{password}"')
    for name, path in (("ca_file", ca), ("cert_file", cert), ("key_file", key)):
        if path:
            lines.append(f'{name} = "{path}"')
    path = directory / "station-agent.toml"
    path.write_text(f'[station]\nid = "{STATION}"\nvendor = "Example"\nmodel = "AC-22"\n\n'
                    "[csms]\n" + "\n".join(lines) + '\n\n[storage]\ndir = "state"\n\n'
                    '[hal]\ndriver = "mock"\n\n[[evse]]\nid = 1\nmax_current_a = 32\n')
    return path


def server_tls(cert, key, client_ca=None):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


async def registered(csms, after=None):
    link = await csms.wait_station(STATION, timeout=15, after=after)
    await link.expect_call("StatusNotification", timeout=10)
    return link


def common_name(der):
    cert = x509.load_der_x509_certificate(der)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


async def get(link, component, variable):
    answer = await link.call("GetVariables", {"getVariableData": [
        {"component": {"name": component}, "variable": {"name": variable}}]})
    return answer["getVariableResult"][0].get("attributeValue")


async def set_(link, component, variable, value):
    answer = await link.call("SetVariables", {"setVariableData": [
        {"component": {"name": component}, "variable": {"name": variable},
         "attributeValue": value}]})
    return answer["setVariableResult"][0]["attributeStatus"]


def network_profile(slot, url, profile):
    return {"configurationSlot": slot, "connectionData": {
        "ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": url,
        "messageTimeout": 30, "securityProfile": profile, "ocppInterface": "Wired0"}}


async def wait_log(agent, text, seconds=15):
    for _ in range(int(seconds * 10)):
        if text in agent.log:
            return True
        await asyncio.sleep(0.1)
    return False


def run(coro, timeout=60):
    asyncio.run(asyncio.wait_for(coro, timeout))


def test_profile_3_uses_the_station_certificate_and_no_password(tmp_path):
    async def main():
        ca, cert, key = make_ca_and_server(tmp_path)
        client_cert, client_key = make_client(tmp_path, STATION)
        async with Csms(ssl_context=server_tls(cert, key, client_ca=ca)) as csms:
            path = config(tmp_path, csms.url, 3, ca=ca, cert=client_cert, key=client_key,
                          password=None)
            async with AgentProcess(path) as agent:
                link = await registered(csms)
                assert link.handshake.authorization is None
                assert common_name(link.handshake.client_certificate) == STATION
                assert link.handshake.tls_version in ("TLSv1.2", "TLSv1.3")
                assert await get(link, "SecurityCtrlr", "SecurityProfile") == "3"
                assert await agent.stop() == 0
            assert csms.schema_errors == []
    run(main())


def test_profile_3_refused_by_the_csms_never_connects_and_is_a_security_event(tmp_path):
    async def main():
        ca, cert, key = make_ca_and_server(tmp_path)
        other_ca, _, _ = make_ca_and_server(tmp_path, prefix="other-")
        client_cert, client_key = make_client(tmp_path, STATION, prefix="other-")
        async with Csms(ssl_context=server_tls(cert, key, client_ca=ca)) as csms:
            path = config(tmp_path, csms.url, 3, ca=ca, cert=client_cert, key=client_key,
                          password=None)
            async with AgentProcess(path) as agent:
                assert await wait_log(agent, "security event FailedToAuthenticateAtCsms")
                assert not csms.links.get(STATION)
                assert await agent.stop() == 0
    run(main())


def test_upgrade_from_profile_1_to_2_to_3_and_no_way_back(tmp_path):
    async def main():
        ca, cert, key = make_ca_and_server(tmp_path)
        client_cert, client_key = make_client(tmp_path, STATION)
        async with Csms(passwords={STATION: PASSWORD}) as plain, \
                Csms(passwords={STATION: PASSWORD}, ssl_context=server_tls(cert, key)) as tls, \
                Csms(ssl_context=server_tls(cert, key, client_ca=ca)) as mutual:
            path = config(tmp_path, plain.url, 1, ca=ca, cert=client_cert, key=client_key)
            async with AgentProcess(path) as agent:
                link = await registered(plain)
                assert link.handshake.tls_version is None
                answer = await link.call("SetNetworkProfile", network_profile(2, tls.url, 2))
                assert answer == {"status": "Accepted"}
                assert await set_(link, "OCPPCommCtrlr", "NetworkConfigurationPriority",
                                  "2,1") == "RebootRequired"
                assert (await link.call("Reset", {"type": "Immediate"}))["status"] == "Accepted"

                link = await registered(tls)
                assert link.handshake.tls_version and link.handshake.authorization
                assert await get(link, "SecurityCtrlr", "SecurityProfile") == "2"
                assert await get(link, "OCPPCommCtrlr", "ActiveNetworkProfile") == "2"
                # A05 (TC_A_19): the profile-1 slot has left the priority list.
                assert await get(link, "OCPPCommCtrlr", "NetworkConfigurationPriority") == "2"
                answer = await link.call("SetNetworkProfile", network_profile(1, mutual.url, 3))
                assert answer == {"status": "Accepted"}
                await set_(link, "OCPPCommCtrlr", "NetworkConfigurationPriority", "1,2")
                await link.call("Reset", {"type": "Immediate"})

                link = await registered(mutual)
                assert link.handshake.authorization is None
                assert common_name(link.handshake.client_certificate) == STATION
                assert await get(link, "SecurityCtrlr", "SecurityProfile") == "3"
                answer = await link.call("SetNetworkProfile", network_profile(2, plain.url, 1))
                assert answer["status"] == "Rejected"
                assert answer["statusInfo"]["reasonCode"] == "Downgrade"
                assert await agent.stop() == 0

            # A restart keeps profile 3: the station goes back to the mutual-TLS CSMS.
            async with AgentProcess(path) as agent:
                link = await registered(mutual, after=link)
                assert await get(link, "SecurityCtrlr", "SecurityProfile") == "3"
                assert await agent.stop() == 0
            assert not plain.schema_errors and not tls.schema_errors
            assert not mutual.schema_errors
    run(main(), 90)


def test_a_bad_new_profile_falls_back_to_the_working_one(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            async with AgentProcess(config(tmp_path, csms.url, 1)) as agent:
                link = await registered(csms)
                for variable, value in (("RetryBackOffWaitMinimum", "0"),
                                        ("RetryBackOffRandomRange", "0"),
                                        ("NetworkProfileConnectionAttempts", "2")):
                    assert await set_(link, "OCPPCommCtrlr", variable, value) == "Accepted"
                dead = csms.url.replace(str(csms.port), "1")
                assert (await link.call("SetNetworkProfile", network_profile(2, dead, 1)))[
                    "status"] == "Accepted"
                await set_(link, "OCPPCommCtrlr", "NetworkConfigurationPriority", "2,1")
                await link.call("Reset", {"type": "Immediate"})
                again = await registered(csms, after=link)
                assert await get(again, "OCPPCommCtrlr", "ActiveNetworkProfile") == "1"
                assert agent.log.count("cannot connect to ws://127.0.0.1:1/") == 2
                assert await agent.stop() == 0
    run(main())


def test_a_new_basic_auth_password_is_used_at_once(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            async with AgentProcess(config(tmp_path, csms.url, 1)) as agent:
                link = await registered(csms)
                csms.passwords[STATION] = NEW_PASSWORD
                assert await set_(link, "SecurityCtrlr", "BasicAuthPassword",
                                  NEW_PASSWORD) == "Accepted"
                again = await csms.wait_station(STATION, timeout=15, after=link)
                assert again.handshake.authorization.startswith("Basic ")
                assert not again.calls("BootNotification"), "a reconnect, not a reboot"
                assert NEW_PASSWORD not in agent.log and PASSWORD not in agent.log
                assert await agent.stop() == 0
    run(main())


def test_a_root_installed_over_ocpp_opens_the_way_to_profile_2(tmp_path):
    async def main():
        ca, cert, key = make_ca_and_server(tmp_path)
        async with Csms(passwords={STATION: PASSWORD}) as plain, \
                Csms(passwords={STATION: PASSWORD}, ssl_context=server_tls(cert, key)) as tls:
            async with AgentProcess(config(tmp_path, plain.url, 1)) as agent:
                link = await registered(plain)
                started = await link.expect_call("SecurityEventNotification", timeout=10)
                assert started["type"] == "StartupOfTheDevice"
                # A05.FR.02: the profile is stored; using it waits for a CSMS root.
                answer = await link.call("SetNetworkProfile", network_profile(2, tls.url, 2))
                assert answer == {"status": "Accepted"}
                assert await set_(link, "OCPPCommCtrlr", "NetworkConfigurationPriority",
                                  "2,1") == "Rejected"
                answer = await link.call("InstallCertificate", {
                    "certificateType": "CSMSRootCertificate", "certificate": "garbage"})
                assert answer["status"] == "Rejected"
                answer = await link.call("GetInstalledCertificateIds", {})
                assert answer["status"] == "NotFound"
                answer = await link.call("InstallCertificate", {
                    "certificateType": "CSMSRootCertificate", "certificate": ca.read_text()})
                assert answer["status"] == "Accepted"
                ids = await link.call("GetInstalledCertificateIds",
                                      {"certificateType": ["CSMSRootCertificate"]})
                assert len(ids["certificateHashDataChain"]) == 1
                assert (await link.call("SetNetworkProfile", network_profile(2, tls.url, 2)))[
                    "status"] == "Accepted"
                await set_(link, "OCPPCommCtrlr", "NetworkConfigurationPriority", "2,1")
                await link.call("Reset", {"type": "Immediate"})
                link = await registered(tls)
                events = [await link.expect_call("SecurityEventNotification", timeout=10)
                          for _ in range(1)]
                assert events[0]["type"] == "ResetOrReboot"
                assert await get(link, "SecurityCtrlr", "SecurityProfile") == "2"
                # The last CSMS root of a station on profile 2 cannot go.
                root = ids["certificateHashDataChain"][0]["certificateHashData"]
                answer = await link.call("DeleteCertificate", {"certificateHashData": root})
                assert answer["status"] == "Failed"
                assert await agent.stop() == 0
            assert not plain.schema_errors and not tls.schema_errors
    run(main(), 90)


def test_sign_certificate_round_trip_and_the_next_connection_uses_the_new_certificate(tmp_path):
    from certs import dev_pki
    from cryptography.hazmat.primitives import serialization

    async def main():
        ca, cert, key = make_ca_and_server(tmp_path)
        ca_cert = x509.load_pem_x509_certificate(ca.read_bytes())
        ca_key = serialization.load_pem_private_key((tmp_path / "ca.key").read_bytes(), None)
        client_cert, client_key = make_client(tmp_path, STATION)
        async with Csms(ssl_context=server_tls(cert, key, client_ca=ca)) as csms:
            path = config(tmp_path, csms.url, 3, ca=ca, cert=client_cert, key=client_key,
                          password=None)
            async with AgentProcess(path) as agent:
                link = await registered(csms)
                first = x509.load_der_x509_certificate(link.handshake.client_certificate)
                answer = await link.call("TriggerMessage",
                                         {"requestedMessage": "SignChargingStationCertificate"})
                assert answer["status"] == "Accepted"
                request = await link.expect_call("SignCertificate", timeout=10)
                csr = x509.load_pem_x509_csr(request["csr"].encode())
                assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == STATION
                # Garbage first: refused, reported, the old certificate stays in use.
                answer = await link.call("CertificateSigned", {
                    "certificateChain": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                    "certificateType": "ChargingStationCertificate"})
                assert answer["status"] == "Rejected"
                event = await link.expect_call("SecurityEventNotification", timeout=10,
                                               where=lambda p: p["type"] != "StartupOfTheDevice")
                assert event["type"] == "InvalidChargingStationCertificate"
                signed = dev_pki.sign_csr(request["csr"], ca_cert, ca_key, days=30)
                answer = await link.call("CertificateSigned", {
                    "certificateChain": dev_pki.pem(signed).decode(),
                    "certificateType": "ChargingStationCertificate"})
                assert answer["status"] == "Accepted"
                again = await csms.wait_station(STATION, timeout=15, after=link)
                used = x509.load_der_x509_certificate(again.handshake.client_certificate)
                assert used.serial_number == signed.serial_number != first.serial_number
                key_files = list((tmp_path / "state" / "certs").rglob("key.pem"))
                assert key_files and all(p.stat().st_mode & 0o077 == 0 for p in key_files)
                assert "PRIVATE KEY" not in agent.log
                assert await agent.stop() == 0
            assert csms.schema_errors == []
    run(main(), 90)
