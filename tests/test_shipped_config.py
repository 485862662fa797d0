"""The config the package installs, placeholder password and all.

The package starts the service with config/station-agent.toml before anyone has edited
it. Its password is public, so check-config warns about it (exit 0: the file is valid)
and run logs the same warning; and what it seeds is provisional, so the operator who then
writes the real URL and password gets them, though the [csms] table otherwise seeds the
device model only on the first start.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tomllib
from pathlib import Path

from agent.config import SHIPPED_PASSWORD, load_config
from agent.demo.csms import Csms
from tests.harness import PASSWORD, AgentProcess, InProcessAgent, write_config

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "station-agent.toml"
STATION = "CS-TEST"
NEW_PASSWORD = "csms-rotated-password-01"
OTHER_PASSWORD = "another-config-password-2"


def check_config(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "check-config", "--config", str(config)],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)


def warning_for(config: Path, station_id: str) -> str:
    return (f"{config}: csms.password: is the placeholder of the shipped config, which anyone "
            f"with the package can read; set the password the CSMS holds for '{station_id}' "
            "(e.g. from python3 -c \"import secrets; print(secrets.token_urlsafe(30))\")")


def test_the_shipped_config_has_the_placeholder_the_agent_knows():
    data = tomllib.loads(SHIPPED.read_text())
    assert data["csms"]["password"] == SHIPPED_PASSWORD


def test_check_config_warns_on_the_placeholder_and_passes(tmp_path):
    # The shipped file as installed, but with a storage dir this test may write.
    config = tmp_path / "station-agent.toml"
    config.write_text(SHIPPED.read_text().replace('dir = "/var/lib/station-agent"',
                                                  f'dir = "{tmp_path / "state"}"'))
    result = check_config(config)
    assert result.returncode == 0
    assert result.stdout == f"{config}: OK\n"
    assert result.stderr == f"station-agent: warning: {warning_for(config, 'CS-001')}\n"
    # A real password: no warning at all.
    config.write_text(config.read_text().replace(SHIPPED_PASSWORD, PASSWORD))
    assert (check_config(config).returncode, check_config(config).stderr) == (0, "")


def test_run_logs_the_same_warning_and_runs(tmp_path):
    async def main():
        async with Csms(passwords={STATION: SHIPPED_PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url, password=SHIPPED_PASSWORD)
            async with AgentProcess(config) as agent:
                link = await csms.wait_station(STATION, timeout=10)
                await link.expect_call("BootNotification", timeout=10)
                assert await agent.stop() == 0
        expected = warning_for(config, STATION)
        warnings = [line for line in agent.log.splitlines() if "placeholder of the shipped" in line]
        assert len(warnings) == 1 and warnings[0].endswith(f" WARNING agent.cli: {expected}")
        assert check_config(config).stderr == f"station-agent: warning: {expected}\n"
    asyncio.run(asyncio.wait_for(main(), 60))


async def _boots(config: Path, csms: Csms) -> None:
    """One life of the agent in this process: until the CSMS has its BootNotification."""
    async with InProcessAgent(config):
        link = await csms.wait_station(STATION, timeout=10)
        await link.expect_call("BootNotification", timeout=10)


def test_what_the_placeholder_seeded_gives_way_to_the_edited_config(tmp_path):
    async def main():
        async with Csms(passwords={STATION: SHIPPED_PASSWORD}) as first, \
                Csms(passwords={STATION: PASSWORD}) as second:
            # Installed and started as shipped (its URL and placeholder password).
            config = write_config(tmp_path, first.url, password=SHIPPED_PASSWORD)
            await _boots(config, first)
            # The operator writes the real CSMS and password, and restarts: both count.
            config = write_config(tmp_path, second.url, password=PASSWORD)
            await _boots(config, second)
            # From now on the device model is the truth, as for any first start: a later
            # edit of [csms] changes nothing (the CSMS owns it through OCPP).
            write_config(tmp_path, first.url, password=OTHER_PASSWORD)
            second.passwords = {STATION: PASSWORD}
            await _boots(config, second)
            assert len(first.links[STATION]) == 1
    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_password_the_csms_set_meanwhile_is_kept(tmp_path):
    async def main():
        async with Csms(passwords={STATION: SHIPPED_PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url, password=SHIPPED_PASSWORD)
            async with InProcessAgent(config):
                link = await csms.wait_station(STATION, timeout=10)
                await link.expect_call("BootNotification", timeout=10)
                # A01: the CSMS replaces the well-known first password at once.
                answer = await link.call("SetVariables", {"setVariableData": [{
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                    "attributeValue": NEW_PASSWORD}]})
                assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
            # The config still has the placeholder: restarting must not bring it back.
            csms.passwords = {STATION: NEW_PASSWORD}
            await _boots(config, csms)
            assert load_config(config).csms.password == SHIPPED_PASSWORD
    asyncio.run(asyncio.wait_for(main(), 60))
