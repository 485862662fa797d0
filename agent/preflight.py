"""What `run` needs of this machine beyond a well-formed config file, checked before it starts.

`load_config` answers "is the file right?"; `check_startable` answers "can the daemon start
with it here?": the storage directory can be created and written, the certificate files
hold what TLS will load, the firmware commands name programs that exist. `station-agent
check-config` and `station-agent run` both call it before anything else happens and
print the same one line (exit 2) when it fails: what check-config passes, run starts
with. Without it a storage dir under /proc failed only once run opened the database, and
a ca_file that is not PEM never failed at all: the agent retried TLS set-up for ever.

Some findings are not errors: `check_startable` returns them as warning lines (the
shipped placeholder password, a certificate outside its validity period). check-config
prints them, run logs them.

The checks run as the user who runs them: `check-config` as root says nothing about what
the service's user may write (`sudo -u station-agent station-agent check-config` does).
They change nothing: a probe file or directory is created and removed at once.
"""

from __future__ import annotations

import os
import pwd
import shutil
import ssl
import stat
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from agent.config import SHIPPED_PASSWORD, Config, ConfigError
from agent.config_fields import _Invalid
from agent.ocpp.tls import TlsSettings
from agent.store import DB_NAME
from hal.api import HalConfigError
from hal.drivers.command_installer import PLACEHOLDER, split_command

# sockaddr_un.sun_path is 108 bytes on Linux, one of them the terminating NUL.
SOCKET_PATH_MAX = 107
# Directories the daemon makes under storage.dir (agent.daemon and the blocks it wires).
_SUBDIRS = ("log", "certs", "firmware", "diagnostics")
_PROBE_PREFIX = ".station-agent-check-"


def check_startable(config: Config, *, now: datetime | None = None) -> list[str]:
    """Raise ConfigError (one line: file, key, what to do) for what would stop `run`;
    return warning lines of the same shape for what would only surprise."""
    try:
        _storage(config)
        warnings = _tls_files(config, now or datetime.now(timezone.utc))
        _firmware(config)
    except _Invalid as exc:
        raise ConfigError(f"{config.path}: {exc.key}: {exc.problem}", key=exc.key,
                          path=config.path) from None
    if config.csms.password == SHIPPED_PASSWORD:
        warnings.insert(0, "csms.password: is the placeholder of the shipped config, which "
                           "anyone with the package can read; set the password the CSMS "
                           f"holds for '{config.station.id}' (e.g. from python3 -c \"import "
                           "secrets; print(secrets.token_urlsafe(30))\")")
    return [f"{config.path}: {line}" for line in warnings]


# -- storage.dir ----------------------------------------------------------------------------

KEY_STORAGE = "storage.dir"


def _storage(config: Config) -> None:
    directory = config.storage.dir
    existing = directory
    while not os.path.lexists(existing):
        existing = existing.parent
    if existing != directory:
        # run creates it: the nearest existing ancestor must take a new directory.
        if not existing.is_dir():
            raise _Invalid(KEY_STORAGE, f"cannot create {directory}: {existing} is not a directory")
        _probe(existing, f"cannot create {directory}", make_dir=True)
    else:
        if not directory.is_dir():
            raise _Invalid(KEY_STORAGE, f"{directory} exists and is not a directory")
        _probe(directory, f"cannot write to {directory}", make_dir=False)
        _contents(directory, config.hal.driver == "mock")
    if config.hal.driver == "mock":
        sock = _socket_path(directory)
        size = len(os.fsencode(sock))
        if size > SOCKET_PATH_MAX:
            raise _Invalid(KEY_STORAGE, f"{directory} is too long for the mock station's "
                           f"control socket ({size} bytes with /{sock.name}; a Unix socket "
                           f"path holds at most {SOCKET_PATH_MAX}); pick a shorter directory")


def _probe(directory: Path, what: str, *, make_dir: bool) -> None:
    """Create and remove a directory or file in `directory`: the only test of "may I write
    here" that /proc, sysfs, read-only mounts and access rules all answer truthfully
    (os.access says yes to root for all of them)."""
    try:
        if make_dir:
            os.rmdir(tempfile.mkdtemp(prefix=_PROBE_PREFIX, dir=directory))
        else:
            fd, name = tempfile.mkstemp(prefix=_PROBE_PREFIX, dir=directory)
            os.close(fd)
            os.unlink(name)
    except PermissionError:
        raise _Invalid(KEY_STORAGE, f"{what}: permission denied in {directory} for user "
                       f"{_user()}; give the agent's user a directory it may write, or run "
                       "check-config as that user") from None
    except OSError as exc:   # /proc, a read-only mount, ...: the file system says no
        raise _Invalid(KEY_STORAGE, f"{what}: {directory} does not take new "
                       f"{'directories' if make_dir else 'files'} "
                       f"({exc.strerror or exc}); pick a directory on a writable file "
                       "system") from None


def _contents(directory: Path, mock: bool) -> None:
    """What an earlier run left that this one could not use."""
    database = directory / DB_NAME
    if os.path.lexists(database):
        if not database.is_file():
            raise _Invalid(KEY_STORAGE, f"{database} exists and is not a file")
        try:
            os.close(os.open(database, os.O_RDWR))
        except OSError as exc:
            raise _Invalid(KEY_STORAGE, f"cannot open the database {database} for writing: "
                           f"{exc.strerror or exc}; it must belong to the agent's user "
                           f"({_user()} here)") from None
    for name in _SUBDIRS:
        path = directory / name
        if os.path.lexists(path) and not path.is_dir():
            raise _Invalid(KEY_STORAGE, f"{path} exists and is not a directory; remove it")
    sock = _socket_path(directory)
    if mock and os.path.lexists(sock) and not stat.S_ISSOCK(os.lstat(sock).st_mode):
        raise _Invalid(KEY_STORAGE, f"{sock} exists and is not a socket; remove it")


def _socket_path(directory: Path) -> Path:
    from agent.control import socket_path   # the mock's business: imported for it alone
    return socket_path(directory)


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


# -- certificates ---------------------------------------------------------------------------

def _tls_files(config: Config, now: datetime) -> list[str]:
    """The files TLS will load, loaded the way it will load them (agent.ocpp.tls), each
    checked whatever the security profile: the CSMS may move the station to one that
    uses them (SetNetworkProfile), and a file the config names should be right."""
    csms = config.csms
    if csms.ca_file is None and csms.cert_file is None and csms.key_file is None:
        return []   # and cryptography stays unimported: a profile 1 daemon is smaller
    from agent.pki.checks import validity_problem
    warnings: list[str] = []
    if csms.ca_file is not None:
        roots, certs = _certificates(csms.ca_file, "csms.ca_file", "CSMS root certificate(s)")
        if all(validity_problem(c, now) for c in certs):
            warnings.append(f"csms.ca_file: {validity_problem(certs[0], now)} ({csms.ca_file}); "
                            "TLS to the CSMS will fail until it is replaced")
        try:
            TlsSettings(roots).context()
        except ssl.SSLError as exc:
            raise _Invalid("csms.ca_file", f"{csms.ca_file}: TLS cannot use it: "
                                           f"{exc.reason or exc}") from None
    if csms.cert_file is not None:
        _, certs = _certificates(csms.cert_file, "csms.cert_file",
                                "station certificate (chain)")
        problem = validity_problem(certs[0], now)
        if problem:
            warnings.append(f"csms.cert_file: {problem} ({csms.cert_file}); the CSMS will "
                            "refuse it on security profile 3")
    if csms.key_file is not None:
        _private_key(csms.key_file)
    if csms.cert_file is not None and csms.key_file is not None:
        _pair(csms.cert_file, csms.key_file)
    return warnings


def _certificates(path: Path, key: str, kind: str) -> tuple[str, list]:
    """The PEM text of `path` and its certificates; _Invalid naming key if it has none."""
    from agent.pki.checks import CertificateError, parse_certificates
    data = _read(path, key)
    der = data[:1] == b"\x30"   # an ASN.1 SEQUENCE: a DER certificate
    try:
        text = data.decode("utf-8")   # as agent.trust reads it
        certs = parse_certificates(text)
    except (UnicodeDecodeError, CertificateError) as exc:
        if der:
            raise _Invalid(key, f"{path} is DER, not PEM; convert it with openssl x509 "
                                f"-inform DER -in {path.name} -out {path.stem}.pem") from None
        problem = "not text" if isinstance(exc, UnicodeDecodeError) else str(exc)
        raise _Invalid(key, f"{path}: {problem}; expected the {kind} in PEM") from None
    return text, certs


def _private_key(path: Path) -> None:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    key = "csms.key_file"
    data = _read(path, key)
    try:
        serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # OpenSSL would prompt for the passphrase on a terminal the service does not have.
        raise _Invalid(key, f"{path} is encrypted; the agent cannot ask for a passphrase: "
                            "store it unencrypted (openssl pkey -in KEY -out KEY.plain), "
                            "readable only by the agent's user") from None
    except (ValueError, UnsupportedAlgorithm):
        # cryptography's own words differ between versions and name no file: ours do.
        raise _Invalid(key, f"{path} is not a PEM private key (-----BEGIN ... PRIVATE "
                            "KEY-----) this agent can read") from None


def _pair(cert: Path, key_path: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # A password callback that gives nothing: never a prompt (the key is checked above).
        context.load_cert_chain(str(cert), str(key_path), password=lambda: b"")
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc).upper():
            raise _Invalid("csms.key_file", f"{key_path} is not the private key of "
                                            f"csms.cert_file {cert}") from None
        raise _Invalid("csms.cert_file", f"TLS cannot use {cert} with {key_path}: "
                                         f"{exc.reason or exc}") from None


def _read(path: Path, key: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _Invalid(key, f"cannot read {path}: {exc.strerror or exc}") from None


# -- [firmware] -----------------------------------------------------------------------------

def _firmware(config: Config) -> None:
    for key, command in (("firmware.install_command", config.firmware.install_command),
                         ("firmware.version_command", config.firmware.version_command)):
        if command is not None:
            _program(key, command)


def _program(key: str, command: str) -> None:
    """The command's program exists and may be run, found the way exec will find it."""
    try:
        program = split_command(command, key)[0]
    except HalConfigError as exc:  # load_config has said so already; kept for direct callers
        raise _Invalid(key, exc.message) from None
    if PLACEHOLDER in program:
        return  # the image runs itself: nothing to look for before it exists
    if os.sep in program:
        path = Path(program)
        if not path.exists():
            raise _Invalid(key, f"{program} does not exist")
        if not path.is_file() or not os.access(path, os.X_OK):
            raise _Invalid(key, f"{program} is not an executable file")
        return
    if shutil.which(program) is None:
        raise _Invalid(key, f"program {program!r} not found on PATH; install it or give its "
                            "full path")
