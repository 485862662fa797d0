"""`station-agent csms`: the CSMS a newcomer starts for `station-agent run`."""

import asyncio
import re
import signal
import sys

from tests.harness import PASSWORD, AgentProcess, write_config


def test_a_station_boots_against_it_and_it_stops_on_sigterm(tmp_path):
    async def main():
        csms = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "csms", "--port", "0",
            "--password", f"CS-CMD={PASSWORD}", "--heartbeat-interval", "77",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            first = (await asyncio.wait_for(csms.stdout.readline(), 20)).decode()
            url = re.match(r"CSMS listening on (ws://127\.0\.0\.1:\d+/ocpp)/<station id>",
                           first)
            assert url, first
            config = write_config(tmp_path, url.group(1), station_id="CS-CMD")
            async with AgentProcess(config) as agent:
                while True:
                    line = (await asyncio.wait_for(csms.stdout.readline(), 20)).decode()
                    assert line, "the CSMS ended"
                    if "<-" in line and '"interval":77' in line:
                        break   # the BootNotification answered, as printed
                assert await agent.stop() == 0
            csms.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(csms.wait(), 10) == 0
        finally:
            if csms.returncode is None:
                csms.kill()
                await csms.wait()
    asyncio.run(main())


def test_a_malformed_password_option_is_refused():
    from agent.cli import main
    try:
        main(["csms", "--password", "no-equals-sign"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("accepted a --password without STATION=")
