"""agent.preflight on its own: the limits it applies are the system's, it changes nothing,
and what would only surprise is a warning, not a refusal. (That check-config and run
both refuse what it refuses, with the same line, is tests/test_check_config_agreement.py.)"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from agent.config import ConfigError, load_config
from agent.preflight import SOCKET_PATH_MAX, check_startable
from certs.dev_pki import make_dev_pki

PASSWORD = "s3cret-password-0001"


def write(directory: Path, storage: str = "state", profile: int = 1, extra: str = "",
          **files: str) -> Path:
    scheme = "ws" if profile == 1 else "wss"
    lines = "".join(f'{key} = "{value}"\n' for key, value in files.items())
    path = directory / "agent.toml"
    path.write_text('[station]\nid = "CS-P"\nvendor = "Example"\nmodel = "AC-22"\n\n'
                    f'[csms]\nurl = "{scheme}://127.0.0.1:9/ocpp"\nsecurity_profile = {profile}\n'
                    f'password = "{PASSWORD}"\n{lines}\n[storage]\ndir = "{storage}"\n\n'
                    f'[hal]\ndriver = "mock"\n\n[[evse]]\nid = 1\nmax_current_a = 32\n{extra}')
    return path


def refusal(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        check_startable(load_config(path))
    return str(info.value)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="sa-pf-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_the_socket_path_limit_is_the_kernels(short_dir: Path):
    """A storage dir whose control socket path is 107 bytes passes and binds; one byte
    more is refused, and the kernel would refuse it too."""
    room = SOCKET_PATH_MAX - len(str(short_dir)) - len("/control.sock") - 1
    fits = short_dir / ("d" * room)
    assert len(os.fsencode(fits / "control.sock")) == SOCKET_PATH_MAX
    fits.mkdir()
    assert check_startable(load_config(write(short_dir, str(fits)))) == []
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(fits / "control.sock"))
    longer = short_dir / ("d" * (room + 1))
    longer.mkdir()
    message = refusal(write(short_dir, str(longer)))
    assert "storage.dir" in message and "108 bytes" in message
    with socket.socket(socket.AF_UNIX) as sock, pytest.raises(OSError):
        sock.bind(str(longer / "control.sock"))


def test_checking_creates_nothing(short_dir: Path):
    config = write(short_dir, "a/b/state")
    assert check_startable(load_config(config)) == []
    assert sorted(os.listdir(short_dir)) == ["agent.toml"]   # run makes the directory
    (short_dir / "state").mkdir()
    assert check_startable(load_config(write(short_dir, "state"))) == []
    assert os.listdir(short_dir / "state") == []


def test_certificates_out_of_their_validity_are_warnings(short_dir: Path):
    make_dev_pki(short_dir / "pki", "CS-P", days=365)   # the root lives twice as long
    config = load_config(write(short_dir, profile=3, ca_file="pki/csms-root.pem",
                               cert_file="pki/station.pem", key_file="pki/station.key"))
    now = datetime.now(timezone.utc)
    assert check_startable(config, now=now) == []
    later = check_startable(config, now=now + timedelta(days=400))
    assert len(later) == 1 and ": csms.cert_file: CN=CS-P expired on " in later[0]
    assert "the CSMS will refuse it on security profile 3" in later[0]
    much_later = check_startable(config, now=now + timedelta(days=800))
    assert [line.split(": ")[1] for line in much_later] == ["csms.ca_file", "csms.cert_file"]
    assert "TLS to the CSMS will fail until it is replaced" in much_later[0]
    before = check_startable(config, now=now - timedelta(days=2))
    assert len(before) == 2 and all("is not valid before" in line for line in before)


def test_a_program_on_path_and_the_image_as_program_pass(short_dir: Path):
    for command in ("sh -c 'exit 0' {file}", "{file} --install"):
        config = write(short_dir, extra=f'\n[firmware]\ninstall_command = "{command}"\n')
        assert check_startable(load_config(config)) == [], command
