"""One agent per storage directory (and so per station): a second `station-agent run`
exits 2 with one line before it opens the database or touches any hardware."""

import asyncio
import os
import sys
from pathlib import Path

from agent.demo.csms import Csms
from agent.instance_lock import AlreadyRunning, InstanceLock
from tests.harness import PASSWORD, AgentProcess, write_config
from tests.test_sim_agent import sim_async

STATION = "CS-TEST"


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def second_run(config: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "run", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=str(Path(__file__).parent.parent))
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    return proc.returncode, (out + err).decode()


def test_a_second_agent_on_the_same_storage_dir_exits_2_and_leaves_the_first_alone(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            async with AgentProcess(config) as first:
                link = await csms.wait_station(STATION, timeout=10)
                await link.expect_call("StatusNotification", timeout=10)
                assert (await sim_async(config, "plug", "1")).returncode == 0
                code, text = await second_run(config)
                assert code == 2
                assert text.count("\n") == 1 and text.startswith("station-agent: "), text
                assert f"(pid {first.proc.pid})" in text and "storage.dir" in text
                # The first one never noticed: same link, its mock still answers.
                assert not link.closed.is_set()
                status = await sim_async(config, "status")
                assert status.returncode == 0 and '"plugged": true' in status.stdout
                assert await first.stop() == 0
            # Its lock went with it: the next agent starts.
            async with AgentProcess(config) as again:
                await csms.wait_station(STATION, timeout=10, after=link)
                assert await again.stop() == 0
    run(main())


def test_the_lock_dies_with_a_killed_agent(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            async with AgentProcess(config) as first:
                link = await csms.wait_station(STATION, timeout=10)
                await first.kill()
            async with AgentProcess(config) as again:
                await csms.wait_station(STATION, timeout=10, after=link)
                assert await again.stop() == 0
    run(main())


def test_nothing_is_opened_or_started_while_another_holds_the_lock(tmp_path, monkeypatch,
                                                                     capsys):
    """The order, in process: with the lock held elsewhere, run returns 2 before the
    store exists and before any hardware is built."""
    from agent import cli, daemon
    config = write_config(tmp_path, "ws://127.0.0.1:9/ocpp")
    state = tmp_path / "state"
    built = []
    monkeypatch.setattr(daemon, "build_hardware", lambda *a, **k: built.append(a))
    held = InstanceLock.acquire(state)
    try:
        assert cli.main(["run", "--config", str(config)]) == 2
    finally:
        held.release()
    assert built == []
    assert sorted(p.name for p in state.iterdir()) == ["station-agent.lock"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"(pid {os.getpid()})" in err


def test_the_lock_is_exclusive_within_a_process_too(tmp_path):
    first = InstanceLock.acquire(tmp_path)
    try:
        try:
            InstanceLock.acquire(tmp_path)
        except AlreadyRunning as exc:
            assert str(os.getpid()) in str(exc)
        else:
            raise AssertionError("took a lock that was held")
    finally:
        first.release()
    InstanceLock.acquire(tmp_path).release()
