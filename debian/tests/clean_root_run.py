"""The running half of debian/tests/clean-root: the packaged agent in a clean Debian 12
root, against the project's CSMS peer on 127.0.0.1 (this process, the host side).

    .venv/bin/python debian/tests/clean_root_run.py --root ROOT --work DIR \
        --update-deb NEWER.deb --update-version VERSION

ROOT has the package installed and is not running. Two parts:

1. chroot: the agent from ROOT, as its own user, until the CSMS has accepted its
   BootNotification; then SIGTERM must stop it cleanly (exit 0) within 5 s.
2. boot: ROOT under its own systemd (systemd-nspawn -b, sharing the host's network, so
   127.0.0.1 is the same); commands run inside through nsenter into the container's
   namespaces. It shows station-agent.service reaching active (running) through READY=1
   (Type=notify) with its STATUS= line, the watchdog restarting an agent stopped with
   SIGSTOP, and a self-update: UpdateFirmware with the signed newer .deb, installed by
   station-agent-update.service, the service back in the new version, and the CSMS
   told Installed.

Every wait has a deadline; a failure raises with what was seen, and the container is
powered off (or killed) on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from agent.clock import format_datetime  # noqa: E402
from agent.demo.csms import Csms  # noqa: E402
from tests.file_servers import FileServer  # noqa: E402
from tests.firmware_pki import make_firmware_pki, sign_file  # noqa: E402

STATION = "CS-001"                     # the packaged config's station id
CONFIG = "/etc/station-agent/station-agent.toml"
CHROOT_CONFIG = "/etc/station-agent/clean-root-chroot.toml"
PACKAGED_URL = 'url = "ws://127.0.0.1:9000/ocpp"'
INSTALL_COMMAND = "/usr/libexec/station-agent/install-deb {file}"
WATCHDOG_DROP_IN = """\
# clean-root test: a short watchdog, so a stopped agent is restarted within seconds.
[Service]
WatchdogSec=3s
RestartSec=1s
"""
T0 = time.monotonic()


class Failed(Exception):
    pass


def step(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


PASSED = [0]


def check(condition: bool, text: str) -> None:
    if not condition:
        raise Failed(text)
    PASSED[0] += 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def run(*argv: str, timeout: float = 60, check_rc: bool = True) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise Failed(f"{' '.join(argv)}: no end within {timeout:g} s") from None
    result = proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    if check_rc and result[0] != 0:
        raise Failed(f"{' '.join(argv)}: exit {result[0]}\n{result[1]}{result[2]}")
    return result


async def until(what: str, probe, timeout: float, interval: float = 0.5):
    """probe() until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise Failed(f"{what}: not within {timeout:g} s (last seen: {last!r})")


# -- the CSMS side ---------------------------------------------------------------------------

def boot_status(link) -> str | None:
    """The status the CSMS answered the link's BootNotification with, once answered."""
    boot_ids = set()
    for frame in link.frames:
        try:
            message = json.loads(frame.text)
        except ValueError:
            continue
        if frame.direction == "in" and message[0] == 2 and message[2] == "BootNotification":
            boot_ids.add(message[1])
        elif frame.direction == "out" and message[0] == 3 and message[1] in boot_ids:
            return message[2].get("status")
    return None


async def registered(csms: Csms, after=None, timeout: float = 60):
    """The station's next link, with its BootNotification accepted (the station tells
    its connector status only then); (link, BootNotification payload)."""
    link = await csms.wait_station(STATION, timeout=timeout, after=after)
    boot = await link.expect_call("BootNotification", timeout=timeout)
    await link.expect_call("StatusNotification", timeout=timeout)
    check(boot_status(link) == "Accepted", f"BootNotification answered {boot_status(link)!r}")
    return link, boot


# -- the root --------------------------------------------------------------------------------

class Root:
    def __init__(self, path: Path) -> None:
        self.path = path
        groups = (path / "etc/group").read_text().splitlines()
        self.gid = next(int(line.split(":")[2]) for line in groups
                        if line.startswith("station-agent:"))

    def write_config(self, where: str, port: int, storage: str | None = None,
                     firmware: bool = False) -> None:
        text = (self.path / CONFIG.lstrip("/")).read_text()
        check(PACKAGED_URL in text, f"the packaged config has no {PACKAGED_URL}")
        text = text.replace(PACKAGED_URL, f'url = "ws://127.0.0.1:{port}/ocpp"')
        if storage is not None:
            text = text.replace('dir = "/var/lib/station-agent"', f'dir = "{storage}"')
        if firmware:
            text += f'\n[firmware]\ninstall_command = "{INSTALL_COMMAND}"\n'
        target = self.path / where.lstrip("/")
        target.write_text(text)
        os.chown(target, 0, self.gid)
        target.chmod(0o640)


class Container:
    """ROOT booted under its own systemd; commands run inside through nsenter."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self.log_path = log
        self.proc: asyncio.subprocess.Process | None = None
        self.leader: int | None = None

    async def boot(self) -> None:
        self._log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            "systemd-nspawn", "--quiet", "--directory", str(self.root), "--boot",
            "--register=no", "--keep-unit", "--console=pipe",
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        # For clean-root's exit trap, should this process die without powering it off.
        (self.log_path.parent / "nspawn.pid").write_text(f"{self.proc.pid}\n")
        self.leader = await until("the container's init", self._find_leader, 30, 0.2)
        step(f"container init is host pid {self.leader}")

        async def up():
            rc, out, _ = await self.run("systemctl", "is-system-running", check_rc=False)
            return out.strip() if out.strip() in ("running", "degraded") else None

        state = await until("the container's boot", up, 120)
        if state != "running":
            _, out, _ = await self.run("systemctl", "--failed", "--no-pager", check_rc=False)
            step(f"container boot ended {state}:\n{out}")

    async def _find_leader(self) -> int | None:
        if self.proc.returncode is not None:
            raise Failed(f"systemd-nspawn exited {self.proc.returncode}: "
                         f"{self.log_path.read_text(errors='replace')[-2000:]}")
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
        todo = list(children.get(self.proc.pid, []))
        while todo:
            pid = todo.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            nspid = next((line.split()[1:] for line in status.splitlines()
                          if line.startswith("NSpid:")), [])
            if len(nspid) >= 2 and nspid[-1] == "1":
                return pid
            todo.extend(children.get(pid, []))
        return None

    async def run(self, *argv: str, timeout: float = 60, check_rc: bool = True):
        return await run("nsenter", "--target", str(self.leader), "--all", *argv,
                         timeout=timeout, check_rc=check_rc)

    async def show(self, unit: str) -> dict[str, str]:
        _, out, _ = await self.run(
            "systemctl", "show", unit, "--property",
            "ActiveState,SubState,MainPID,NRestarts,StatusText,Type,Result,WatchdogUSec")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    async def journal(self, unit: str) -> str:
        _, out, _ = await self.run("journalctl", "--unit", unit, "--no-pager",
                                   "--output", "short-monotonic")
        return out

    async def poweroff(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        if self.leader is not None:
            await self.run("systemctl", "poweroff", "--no-block", check_rc=False, timeout=20)
        try:
            await asyncio.wait_for(self.proc.wait(), 60)
        except asyncio.TimeoutError:
            step("container did not power off within 60 s: killing systemd-nspawn")
            self.proc.kill()
            await self.proc.wait()
        self._log.close()


# -- the parts -------------------------------------------------------------------------------

async def chroot_agent(root: Root, csms: Csms, work: Path) -> None:
    step("part 1: the agent from the root (chroot, as user station-agent) -> CSMS")
    storage = "/var/tmp/station-agent-chroot"
    (root.path / storage.lstrip("/")).mkdir(parents=True, exist_ok=True)
    os.chown(root.path / storage.lstrip("/"), *_ids(root))
    root.write_config(CHROOT_CONFIG, csms.port, storage=storage)
    log = (work / "chroot-agent.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        "chroot", "--userspec=station-agent:station-agent", str(root.path),
        "station-agent", "run", "--config", CHROOT_CONFIG,
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        link, boot = await registered(csms, timeout=30)
        step(f"BootNotification Accepted: {boot['chargingStation']}")
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        rc = await asyncio.wait_for(proc.wait(), 10)
        took = time.monotonic() - started
        step(f"SIGTERM: exit {rc} after {took:.2f} s")
        check(rc == 0 and took < 5, f"the agent did not stop cleanly: exit {rc} after {took:.1f} s")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
        (root.path / CHROOT_CONFIG.lstrip("/")).unlink(missing_ok=True)
        shutil.rmtree(root.path / storage.lstrip("/"), ignore_errors=True)


def _ids(root: Root) -> tuple[int, int]:
    users = (root.path / "etc/passwd").read_text().splitlines()
    uid = next(int(line.split(":")[2]) for line in users if line.startswith("station-agent:"))
    return uid, root.gid


async def booted(root: Root, csms: Csms, work: Path, update_deb: Path,
                 update_version: str) -> None:
    step("part 2: boot the root under systemd (systemd-nspawn -b --register=no)")
    root.write_config(CONFIG, csms.port, firmware=True)
    drop_in = root.path / "etc/systemd/system/station-agent.service.d"
    drop_in.mkdir(parents=True, exist_ok=True)
    (drop_in / "clean-root-test.conf").write_text(WATCHDOG_DROP_IN)
    container = Container(root.path, work / "nspawn.log")
    try:
        await container.boot()
        await service_ready(container, csms)
        link = await watchdog_restart(container, csms)
        link = await self_update(container, csms, link, work, update_deb, update_version)
        await foreign_package(container, link, work)
    except BaseException:
        if container.leader is not None:
            for unit in ("station-agent.service", "station-agent-update.service"):
                _, out, _ = await container.run("journalctl", "-u", unit, "--no-pager", "-n", "60",
                                                check_rc=False)
                print(f"--- journal of {unit} (last 60 lines)\n{out}", flush=True)
        raise
    finally:
        await container.poweroff()
    step("container powered off")


async def service_ready(container: Container, csms: Csms) -> None:
    async def running():
        props = await container.show("station-agent.service")
        return props if (props["ActiveState"], props["SubState"]) == ("active", "running") else None

    props = await until("station-agent.service active (running)", running, 60)
    check(props["Type"] == "notify", f"Type={props['Type']}")
    link, _ = await registered(csms, timeout=60)
    step("station-agent.service: active (running); the CSMS accepted its BootNotification")

    async def status_line():
        text = (await container.show("station-agent.service"))["StatusText"]
        return text if text.startswith("connected to the CSMS") else None

    status = await until("STATUS= saying connected", status_line, 20)
    step(f"StatusText={status}")
    _, out, _ = await container.run("systemctl", "status", "station-agent.service",
                                    "--no-pager", "--lines=0", check_rc=False)
    print(out, flush=True)
    check(f"Status: \"{status}\"" in out, "systemctl status shows no Status: line")
    journal = await container.journal("station-agent.service")
    # With Type=notify systemd says Started only once READY=1 came.
    check("Started station-agent.service" in journal, "no 'Started' in the journal")


async def watchdog_restart(container: Container, csms: Csms):
    before = await container.show("station-agent.service")
    old_pid, restarts = before["MainPID"], int(before["NRestarts"])
    check(before["WatchdogUSec"] in ("3s", "3000000"), f"WatchdogUSec={before['WatchdogUSec']}")
    old_link = csms.links[STATION][-1]
    step(f"SIGSTOP to the agent (MainPID {old_pid}, NRestarts {restarts}); WatchdogSec=3s")
    await container.run("sh", "-c", f"kill -STOP {old_pid}")

    async def restarted():
        props = await container.show("station-agent.service")
        done = (props["MainPID"] not in ("0", old_pid) and int(props["NRestarts"]) > restarts
                and (props["ActiveState"], props["SubState"]) == ("active", "running"))
        return props if done else None

    props = await until("a watchdog restart", restarted, 60)
    step(f"restarted: MainPID {props['MainPID']}, NRestarts {props['NRestarts']}")
    journal = await container.journal("station-agent.service")
    lines = [line for line in journal.splitlines() if "atchdog" in line]
    print("\n".join(lines), flush=True)
    check(any("Watchdog timeout" in line for line in lines), "no 'Watchdog timeout' in the journal")
    link, _ = await registered(csms, after=old_link, timeout=60)
    step("the restarted agent is registered again")
    return link


async def self_update(container: Container, csms: Csms, link, work: Path, deb: Path,
                      version: str):
    step(f"self-update to {version} through UpdateFirmware")
    _, before, _ = await container.run("dpkg-query", "-W", "-f=${Version}", "station-agent")
    old_pid = (await container.show("station-agent.service"))["MainPID"]
    seen = await update_firmware(link, 8, deb)
    check(seen == ["Downloading", "Downloaded", "SignatureVerified", "Installing"],
          f"statuses: {seen}")
    step(f"statuses before the restart: {', '.join(seen)}")
    again, boot = await registered(csms, after=link, timeout=240)
    step(f"back: BootNotification {boot['reason']}, firmwareVersion "
         f"{boot['chargingStation'].get('firmwareVersion')}")
    check(boot["reason"] == "FirmwareUpdate", f"boot reason {boot['reason']}")
    check(boot["chargingStation"].get("firmwareVersion") == version, f"boot: {boot}")
    installed = await again.expect_call("FirmwareStatusNotification", timeout=30)
    check(installed == {"status": "Installed", "requestId": 8}, f"then: {installed}")
    step("FirmwareStatusNotification Installed")
    _, after, _ = await container.run("dpkg-query", "-W", "-f=${Version}", "station-agent")
    _, out, _ = await container.run("station-agent", "--version")
    step(f"package {before} -> {after}; station-agent --version: {out.strip()}")
    check(after == version and out.strip() == f"station-agent {version}", "not the new version")
    props = await container.show("station-agent.service")
    check(props["MainPID"] not in ("0", old_pid) and props["ActiveState"] == "active",
          f"station-agent.service after the update: {props}")

    async def update_finished():
        # It restarted the agent from the package's postinst; apt-get ends after that.
        props = await container.show("station-agent-update.service")
        return props if props["ActiveState"] in ("inactive", "failed") else None

    update = await until("station-agent-update.service to finish", update_finished, 300)
    journal = await container.journal("station-agent-update.service")
    print("\n".join(line for line in journal.splitlines()
                    if "apply-update" in line or "Finished" in line), flush=True)
    check(update["Result"] == "success", f"station-agent-update.service: {update}")
    check(f"installed {version}" in journal, "station-agent-update.service reported no install")
    check(csms.schema_errors == [], f"schema errors: {csms.schema_errors}")
    return again


async def update_firmware(link, request_id: int, deb: Path) -> list[str]:
    """UpdateFirmware with `deb`, signed by a new manufacturer root the CSMS installs
    first; the statuses of `request_id` on this link up to the first final one."""
    pki = make_firmware_pki("ec")
    answer = await link.call("InstallCertificate", {
        "certificateType": "ManufacturerRootCertificate", "certificate": pki.root_pem})
    check(answer["status"] == "Accepted", f"InstallCertificate: {answer}")
    with FileServer() as server:
        path = f"/firmware/{deb.name}"
        server.files[path] = deb.read_bytes()
        past = format_datetime(datetime.now(timezone.utc) - timedelta(minutes=1))
        answer = await link.call("UpdateFirmware", {"requestId": request_id, "firmware": {
            "location": server.url(path), "retrieveDateTime": past, "installDateTime": past,
            "signingCertificate": pki.signing_cert_pem, "signature": sign_file(pki, deb)}})
        check(answer["status"] == "Accepted", f"UpdateFirmware: {answer}")
        seen: list[str] = []
        while not seen or seen[-1] in ("Downloading", "Downloaded", "SignatureVerified"):
            payload = await link.expect_call("FirmwareStatusNotification", timeout=120)
            check(payload.get("requestId") == request_id, f"status of another request: {payload}")
            seen.append(payload["status"])
    return seen


async def foreign_package(container: Container, link, work: Path) -> None:
    """A signed package of another name: the root side refuses it, install-deb exits 1,
    the CSMS hears InstallationFailed and the agent keeps running as it was."""
    step("a signed .deb of another package: refused")
    tree = work / "foreign"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        "Package: not-station-agent\nVersion: 99\nArchitecture: all\n"
        "Maintainer: clean-root test <test@localhost>\nDescription: a stranger\n")
    deb = work / "not-station-agent_99_all.deb"
    await run("dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb))
    pid = (await container.show("station-agent.service"))["MainPID"]
    seen = await update_firmware(link, 9, deb)
    seen.append((await link.expect_call("FirmwareStatusNotification", timeout=120))["status"])
    step(f"statuses: {', '.join(seen)}")
    check(seen == ["Downloading", "Downloaded", "SignatureVerified", "Installing",
                   "InstallationFailed"], f"statuses: {seen}")
    journal = await container.journal("station-agent-update.service")
    check("failed: not a station-agent package" in journal, "no refusal in the journal")
    _, out, _ = await container.run("dpkg-query", "-W", "-f=${db:Status-Status}",
                                    "not-station-agent", check_rc=False)
    check(out.strip() != "installed", "the foreign package got installed")
    props = await container.show("station-agent.service")
    check(props["MainPID"] == pid and props["ActiveState"] == "active",
          f"station-agent.service after the refusal: {props}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--update-deb", type=Path, required=True)
    parser.add_argument("--update-version", required=True)
    args = parser.parse_args()
    root = Root(args.root)
    frames = (args.work / "csms-frames.log").open("w")

    def record(station: str, direction: str, text: str) -> None:
        frames.write(f"{time.strftime('%H:%M:%S')} {station} {'->' if direction == 'in' else '<-'} {text}\n")
        frames.flush()

    try:
        async with Csms("127.0.0.1", free_port(), on_frame=record) as csms:
            step(f"CSMS on {csms.url}")
            await chroot_agent(root, csms, args.work)
            await booted(root, csms, args.work, args.update_deb, args.update_version)
    except (Failed, asyncio.TimeoutError) as exc:
        print(f"FAILED: {exc}", flush=True)
        return 1
    finally:
        frames.close()
    print(f"{PASSED[0]} checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
