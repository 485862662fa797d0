"""check-config and run agree on every broken config: both exit 2 with the same one line.

Each row breaks one thing of a config that is otherwise good (the first test proves it
is) and runs the real commands, `python -m agent check-config` and `python -m agent run`,
as a person would. run must refuse at once, before it touches anything: a run that is
still going after the timeout has accepted a config that check-config refused (or
retries for ever, as it did with a ca_file that is not PEM).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from cryptography.hazmat.primitives import serialization

from certs.dev_pki import make_dev_pki

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "s3cret-password-0001"
RUN_TIMEOUT_S = 30   # generous for a loaded machine; a refusing run takes about a second


def base_text(profile: int = 1, storage: str = "state", extra: str = "", **files: str) -> str:
    """The good config; `files`: ca_file, cert_file, key_file of [csms]."""
    scheme = "ws" if profile == 1 else "wss"
    lines = "".join(f'{key} = "{value}"\n' for key, value in files.items())
    return ('[station]\nid = "CS-T"\nvendor = "Example"\nmodel = "AC-22"\n\n'
            f'[csms]\nurl = "{scheme}://127.0.0.1:9/ocpp"\nsecurity_profile = {profile}\n'
            f'password = "{PASSWORD}"\n{lines}\n'
            f'[storage]\ndir = "{storage}"\n\n[hal]\ndriver = "mock"\n\n'
            f'[[evse]]\nid = 1\nmax_current_a = 32\n{extra}')


PROFILE_3 = {"ca_file": "pki/csms-root.pem", "cert_file": "pki/station.pem",
             "key_file": "pki/station.key"}


@dataclass(frozen=True)
class Case:
    name: str
    key: str            # the dotted key the line must name
    says: str           # what the line must say about it
    text: Callable[[Path], str]
    needs: Callable[[], str | None] = lambda: None   # a reason to skip, or None
    as_user: bool = False   # run both commands without root's override of mode bits


# Root writes whatever the mode bits say: its permission cases run without the
# capabilities that let it (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), as a service user would.
AS_USER = (["setpriv", "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search", "--"]
           if os.geteuid() == 0 else [])


def _mode_bits_count() -> str | None:
    if AS_USER and shutil.which("setpriv") is None:
        return "root writes whatever the mode bits say, and setpriv is missing to stop it"
    return None


def _mounted(path: str) -> Callable[[], str | None]:
    return lambda: None if os.path.ismount(path) else f"{path} is not mounted here"


CASES = [
    # -- storage.dir ---------------------------------------------------------------------------
    Case("storage dir under /proc", "storage.dir", "cannot create /proc/station-agent-test",
         lambda d: base_text(storage="/proc/station-agent-test"), _mounted("/proc")),
    Case("storage dir is /proc itself", "storage.dir", "cannot write to /proc",
         lambda d: base_text(storage="/proc"), _mounted("/proc")),
    Case("storage dir under sysfs", "storage.dir", "cannot create /sys/kernel/station-agent-test",
         lambda d: base_text(storage="/sys/kernel/station-agent-test"), _mounted("/sys")),
    Case("storage dir under a regular file", "storage.dir",
         "a-file is not a directory", lambda d: base_text(storage="a-file/state")),
    Case("storage dir is a regular file", "storage.dir", "exists and is not a directory",
         lambda d: base_text(storage="a-file")),
    Case("storage dir read-only", "storage.dir", "permission denied in",
         lambda d: base_text(storage="read-only"), _mode_bits_count, as_user=True),
    Case("storage dir below a read-only dir", "storage.dir", "permission denied in",
         lambda d: base_text(storage="read-only/state"), _mode_bits_count, as_user=True),
    Case("storage dir too long for the control socket", "storage.dir",
         "too long for the mock station's control socket",
         lambda d: base_text(storage="s" * 110)),
    Case("database is a directory", "storage.dir", "station-agent.db exists and is not a file",
         lambda d: base_text(storage="db-is-a-dir")),
    Case("database not writable", "storage.dir",
         "cannot open the database", lambda d: base_text(storage="db-read-only"),
         _mode_bits_count, as_user=True),
    Case("control socket path taken by a file", "storage.dir",
         "control.sock exists and is not a socket",
         lambda d: base_text(storage="sock-is-a-file")),
    # -- certificates ------------------------------------------------------------------------
    Case("ca_file not PEM", "csms.ca_file", "no PEM certificate",
         lambda d: base_text(2, ca_file="garbage.pem")),
    Case("ca_file DER", "csms.ca_file", "is DER, not PEM",
         lambda d: base_text(2, ca_file="pki/root.der")),
    Case("ca_file a private key", "csms.ca_file", "no PEM certificate",
         lambda d: base_text(2, ca_file="pki/station.key")),
    Case("ca_file not PEM on profile 1 too", "csms.ca_file", "no PEM certificate",
         lambda d: base_text(1, ca_file="garbage.pem")),
    Case("cert_file not PEM", "csms.cert_file", "no PEM certificate",
         lambda d: base_text(3, **{**PROFILE_3, "cert_file": "garbage.pem"})),
    Case("key_file not PEM", "csms.key_file", "is not a PEM private key",
         lambda d: base_text(3, **{**PROFILE_3, "key_file": "garbage.pem"})),
    Case("key_file of another certificate", "csms.key_file",
         "is not the private key of csms.cert_file",
         lambda d: base_text(3, **{**PROFILE_3, "key_file": "pki2/station.key"})),
    Case("key_file encrypted", "csms.key_file", "is encrypted",
         lambda d: base_text(3, **{**PROFILE_3, "key_file": "pki/encrypted.key"})),
    # -- [firmware] --------------------------------------------------------------------------
    Case("install_command program missing", "firmware.install_command",
         "program 'no-such-installer-x' not found on PATH",
         lambda d: base_text(extra='\n[firmware]\ninstall_command = "no-such-installer-x {file}"\n')),
    Case("install_command path missing", "firmware.install_command", "does not exist",
         lambda d: base_text(extra=f'\n[firmware]\ninstall_command = "{d}/nowhere/install {{file}}"\n')),
    Case("install_command not executable", "firmware.install_command",
         "is not an executable file",
         lambda d: base_text(extra=f'\n[firmware]\ninstall_command = "{d}/not-executable {{file}}"\n')),
    Case("version_command program missing", "firmware.version_command",
         "program 'no-such-version-x' not found on PATH",
         lambda d: base_text(extra='\n[firmware]\ninstall_command = "true {file}"\n'
                                   'version_command = "no-such-version-x"\n')),
    # -- what load_config already caught: the two agree there too ---------------------------
    Case("profile 1 on wss://", "csms.url", "security_profile 1",
         lambda d: base_text().replace("ws://127", "wss://127")),
    Case("profile 2 without ca_file", "csms.ca_file", "missing",
         lambda d: base_text(2)),
    Case("hardware meter port missing", "evse[1].meter.port", "does not exist",
         lambda d: base_text(extra='[evse.meter]\ndriver = "modbus_meter"\n'
                                   'port = "/dev/ttyNOPE-station-agent"\n'
                                   '[evse.power]\ndriver = "can_power"\ninterface = "virtual"\n'
                                   'channel = "x"\nmodules = [1]\n'
                            ).replace('driver = "mock"', 'driver = "hardware"')),
    Case("a number in quotes", "evse[1].max_current_a", "expected a number",
         lambda d: base_text().replace("max_current_a = 32", 'max_current_a = "32"')),
]


@pytest.fixture(scope="module")
def place() -> Iterator[Path]:
    """A short directory (a Unix socket path must fit in 107 bytes) with the files the
    rows name: certificates good and bad, a read-only directory, stray entries."""
    directory = Path(tempfile.mkdtemp(prefix="sa-cc-", dir="/tmp"))
    try:
        paths = make_dev_pki(directory / "pki", "CS-T")
        make_dev_pki(directory / "pki2", "CS-T")
        pki = directory / "pki"
        (pki / "root.der").write_bytes(_der(paths["csms-root.pem"]))
        key = serialization.load_pem_private_key(paths["station.key"].read_bytes(), None)
        (pki / "encrypted.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"a passphrase")))
        (directory / "garbage.pem").write_text("this is not a certificate\n")
        (directory / "a-file").write_text("")
        (directory / "not-executable").write_text("#!/bin/sh\nexit 0\n")
        os.chmod(directory / "not-executable", 0o644)
        (directory / "read-only").mkdir(mode=0o555)
        (directory / "db-is-a-dir" / "station-agent.db").mkdir(parents=True)
        (directory / "db-read-only").mkdir()
        (directory / "db-read-only" / "station-agent.db").write_bytes(b"")
        os.chmod(directory / "db-read-only" / "station-agent.db", 0o400)
        (directory / "sock-is-a-file").mkdir()
        (directory / "sock-is-a-file" / "control.sock").write_text("")
        yield directory
    finally:
        os.chmod(directory / "read-only", 0o755)
        shutil.rmtree(directory, ignore_errors=True)


def _der(pem_path: Path) -> bytes:
    from cryptography import x509
    return x509.load_pem_x509_certificate(pem_path.read_bytes()).public_bytes(
        serialization.Encoding.DER)


async def _agent(command: str, config: Path, prefix: list[str] = []) -> tuple[int | None, str]:
    proc = await asyncio.create_subprocess_exec(
        *prefix, sys.executable, "-m", "agent", command, "--config", str(config), cwd=str(ROOT),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
    except asyncio.TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
        return None, err.decode()   # still running: it took the config
    return proc.returncode, err.decode()


def _both(config: Path, prefix: list[str]) -> tuple[tuple[int | None, str], tuple[int | None, str]]:
    """check-config and run on the same file, side by side (one process per core)."""
    async def main() -> tuple:
        return tuple(await asyncio.gather(_agent("check-config", config, prefix),
                                          _agent("run", config, prefix)))
    return asyncio.run(main())


def test_the_base_config_checks_ok(place: Path) -> None:
    """Every row below breaks exactly one thing of this."""
    config = place / "good.toml"
    config.write_text(base_text())
    code, err = asyncio.run(_agent("check-config", config))
    assert (code, err) == (0, "")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_check_config_and_run_refuse_with_the_same_line(place: Path, case: Case) -> None:
    reason = case.needs()
    if reason is not None:
        pytest.skip(reason)
    config = place / f"case-{CASES.index(case)}.toml"
    config.write_text(case.text(place))
    before = sorted(os.listdir(place))
    (check_code, check_err), (run_code, run_err) = _both(config, AS_USER if case.as_user else [])
    lines = check_err.strip().splitlines()
    assert check_code == 2 and len(lines) == 1, check_err
    line = lines[0]
    assert line.startswith(f"station-agent: config error: {config}: {case.key}: "), line
    assert case.says in line, line
    # run: the same line, at once (None: still running after the timeout).
    assert (run_code, run_err.strip()) == (2, line), run_err[-500:]
    # Refusing leaves no trace: no state dir, no probe file, nothing under /proc or /sys.
    assert sorted(os.listdir(place)) == before
    assert not os.path.lexists("/sys/kernel/station-agent-test")
    for directory in ("db-is-a-dir", "db-read-only", "sock-is-a-file", "read-only"):
        assert not [n for n in os.listdir(place / directory) if n.startswith(".station-agent")]
