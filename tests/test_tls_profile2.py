"""Security profile 2 on the real agent process: wss://, the CSMS certificate verified
against the configured root, HTTP Basic auth inside TLS."""

import asyncio
import ssl

from agent.demo.csms import Csms
from tests.harness import PASSWORD, AgentProcess
from tests.tls_certs import make_ca_and_server

STATION = "CS-TLS"


def config(directory, url, ca):
    path = directory / "station-agent.toml"
    path.write_text(
        f'[station]\nid = "{STATION}"\nvendor = "Example"\nmodel = "AC-22"\n\n'
        f'[csms]\nurl = "{url}"\nsecurity_profile = 2\npassword = "{PASSWORD}"\n'
        f'ca_file = "{ca}"\n\n[storage]\ndir = "state"\n\n[hal]\ndriver = "mock"\n\n'
        "[[evse]]\nid = 1\nmax_current_a = 32\n")
    return path


def server_context(cert, key):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_profile_2_connects_over_tls_with_basic_auth(tmp_path):
    async def main():
        ca, cert, key = make_ca_and_server(tmp_path)
        async with Csms(passwords={STATION: PASSWORD}, ssl_context=server_context(cert, key)) as csms:
            assert csms.url.startswith("wss://")
            async with AgentProcess(config(tmp_path, csms.url, ca)) as agent:
                link = await csms.wait_station(STATION, timeout=10)
                await link.expect_call("BootNotification", timeout=10)
                assert link.handshake.authorization.startswith("Basic ")
                assert await agent.stop() == 0
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 30))


def test_profile_2_refuses_a_csms_certificate_from_another_root(tmp_path):
    async def main():
        ca, _, _ = make_ca_and_server(tmp_path, prefix="trusted-")
        _, cert, key = make_ca_and_server(tmp_path, prefix="other-")
        async with Csms(passwords={STATION: PASSWORD}, ssl_context=server_context(cert, key)) as csms:
            async with AgentProcess(config(tmp_path, csms.url, ca)) as agent:
                for _ in range(100):
                    if "TLS failed" in agent.log:
                        break
                    await asyncio.sleep(0.1)
                assert "TLS failed" in agent.log and "CERTIFICATE_VERIFY_FAILED" in agent.log
                assert not csms.links.get(STATION), "no OCPP over an unverified connection"
                assert PASSWORD not in agent.log
                assert await agent.stop() == 0
    asyncio.run(asyncio.wait_for(main(), 30))
