"""Real power cuts during a secure firmware update and during certificate installs: the
packaged agent (mock hardware, the mock installer) in the VM guest against the project's
CSMS on the host, QEMU and its disk killed at seeded random moments, the guest booted
again on the same disk, and what the station kept checked against what the CSMS saw.

    .venv/bin/python tests/vm/install_cuts.py --image DIR [--seed N] [--cuts 8] [--cert-cuts 8]

Firmware (OCPP 2.0.1 L01): the CSMS installs a ManufacturerRootCertificate, serves a
signed mock image over HTTP from the host (throttled, so the download takes seconds),
sends UpdateFirmware, and the power is cut while the image downloads, while it is
verified and installed, or after (the agent restarting into the new version, or done).
After every boot: the database is whole, every FirmwareStatusNotification sequence is a
path of Part 2's Figure 119 (the status sent last before a cut may come again: OCPP's
delivery is at least once), the update ends (Installed only when the new version runs,
else a failure status), no file at the image's final name differs from the image, and
the next UpdateFirmware is Accepted (the station is not stuck in an update).

Certificates (A02/A03, M05): TriggerMessage SignChargingStationCertificate, the CSR signed
by a test CA whose root the CSMS installed as CSMSRootCertificate, CertificateSigned; the
cut lands before CertificateSigned, while the station stores the pair, or after its
answer. And InstallCertificate of a fresh root, cut while the station stores it. After
every boot the guest's files are read: the station's chain and key are a pair (the old
one or the new one, whole), a certificate the station answered Accepted for is there,
every stored certificate file parses, and GetInstalledCertificateIds agrees with them.

After every boot also: the BootNotification says PowerUp (or the FirmwareUpdate the
station had recorded on purpose), and systemd did not restart the agent in any boot (no
crash, no watchdog, no kill: the agent's exec into a new firmware included).

Prints one summary line per check and exits 1 if any failed. Security profile 1: the
files are what is checked; a renewed pair is stored the same way on profile 3
(certs/station/current), only the installer's first pair comes from the config there.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE), str(REPO / "debian/tests")]

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: E402

from agent.clock import format_datetime  # noqa: E402
from agent.demo.csms import Csms  # noqa: E402
from clean_root_run import free_port  # noqa: E402
from hal.drivers.mock.installer import mock_image  # noqa: E402
from power_cut import PASSWORD, Record, Run, step  # noqa: E402
from rig import Vm, VmError  # noqa: E402
from tests.firmware_pki import make_certificate, make_firmware_pki, pem, sign_digest  # noqa: E402

STATION = "CS-VM-INSTALL"
STATE = "/var/lib/station-agent"
IMAGE_BYTES = 6 << 20          # the mock image, padded: big enough to take a while
RATE = 1 << 20                 # bytes a second the file server sends (about 6 s a download)
CHUNK = 32 << 10
# The CSMS answers SignatureVerified this late: the station waits for that answer before
# taking its EVSEs out and installing, which widens the verified-not-yet-installed window.
SIGNATURE_ANSWER_DELAY_S = 1.0
FINAL = {"Installed", "InstallationFailed", "InstallVerificationFailed", "DownloadFailed",
         "InvalidSignature", "InvalidCertificate", "RevokedCertificate"}
# Figure 119 of Part 2 (Firmware status transitions), the signed path: from each status,
# the statuses that may follow it. A repeat of the same status is a retry, allowed apart.
NEXT = {
    None: {"DownloadScheduled", "Downloading"},
    "DownloadScheduled": {"Downloading", "DownloadFailed"},
    "Downloading": {"Downloaded", "DownloadFailed", "DownloadPaused"},
    "DownloadPaused": {"Downloading", "DownloadFailed"},
    "Downloaded": {"SignatureVerified", "InvalidSignature"},
    "SignatureVerified": {"InstallScheduled", "Installing", "InstallRebooting"},
    "InstallScheduled": {"Installing", "InstallRebooting", "InstallationFailed"},
    "Installing": {"InstallRebooting", "Installed", "InstallationFailed",
                   "InstallVerificationFailed"},
    "InstallRebooting": {"Installing", "Installed", "InstallationFailed",
                         "InstallVerificationFailed"},
}
# Stages of the station's persisted job (agent/blocks/firmware/job.py), in order.
STAGES = ["Accepted", "DownloadScheduled", "Downloading", "Downloaded", "SignatureVerified",
          "InstallScheduled", "Installing", "InstallRebooting"]
FIRMWARE_TARGETS = ("downloading", "verifying/installing", "after")
CERT_TARGETS = ("during", "after answer", "InstallCertificate", "before")
ROOT_USES = ("CSMSRootCertificate", "ManufacturerRootCertificate", "V2GRootCertificate",
             "MORootCertificate")

# Run in the guest as the service's user: the firmware work files, the mock installer's
# version file, the persisted update and the certificate store, as they are on the disk.
# python3-cryptography is the .deb's dependency (38 in bookworm: no
# load_pem_x509_certificates yet, hence the split by hand).
GUEST_CHECK = r'''
import hashlib, json, os, sqlite3, ssl
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import serialization
STATE = Path("/var/lib/station-agent")
END = "-----END CERTIFICATE-----"
DER = serialization.Encoding.DER
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
def certs(data):
    text = data.decode("ascii")
    blocks = [b + END for b in text.split(END) if "-----BEGIN" in b]
    if not blocks or text.split(END)[-1].strip():
        raise ValueError("not whole PEM certificates")
    return [x509.load_pem_x509_certificate(b.encode()) for b in blocks]
def fp(cert):
    return hashlib.sha256(cert.public_bytes(DER)).hexdigest()
def key_id(key):
    return hashlib.sha256(key.public_key().public_bytes(DER, SPKI)).hexdigest()
out = {"firmware_files": {}, "version_file": None, "job": None, "station": None,
       "pending_key": None, "roots": [], "bad_files": [], "tmp_files": [], "generations": []}
fw = STATE / "firmware"
if fw.is_dir():
    for d in sorted(fw.iterdir()):
        files = {}
        for f in sorted(d.iterdir()) if d.is_dir() else []:
            try:
                entry = {"size": f.stat().st_size}
                if not f.name.endswith(".part"):
                    h = hashlib.sha256()
                    with open(f, "rb") as handle:
                        for chunk in iter(lambda: handle.read(1 << 20), b""):
                            h.update(chunk)
                    entry["sha256"] = h.hexdigest()
                files[f.name] = entry
            except FileNotFoundError:
                pass
        out["firmware_files"][d.name] = files
try:
    out["version_file"] = (STATE / "mock-firmware-version").read_text().strip()
except FileNotFoundError:
    pass
db = sqlite3.connect(f"file:{STATE}/station-agent.db?mode=rw", uri=True, timeout=30)
row = db.execute("SELECT value FROM meta WHERE key = 'firmware.job'").fetchone()
out["job"] = json.loads(row[0]) if row else None
db.close()
base = STATE / "certs"
station = base / "station"
if station.is_dir():
    for p in sorted(station.iterdir()):
        if p.name.endswith(".tmp"):
            out["tmp_files"].append(str(p))
        elif p.is_dir() and not p.is_symlink():
            out["generations"].append(p.name)
    current = station / "current"
    if current.is_symlink():
        folder = station / os.readlink(current)
        pair = {"generation": os.readlink(current)}
        try:
            chain = certs((folder / "chain.pem").read_bytes())
            key = serialization.load_pem_private_key((folder / "key.pem").read_bytes(), None)
            pair["chain"] = [fp(c) for c in chain]
            pair["match"] = (chain[0].public_key().public_bytes(DER, SPKI)
                             == key.public_key().public_bytes(DER, SPKI))
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.load_cert_chain(folder / "chain.pem", folder / "key.pem")
            pair["ssl"] = True
        except Exception as exc:
            pair["error"] = f"{type(exc).__name__}: {exc}"
        out["station"] = pair
    pending = station / "pending.key"
    if pending.exists():
        try:
            out["pending_key"] = key_id(serialization.load_pem_private_key(pending.read_bytes(), None))
        except Exception as exc:
            out["bad_files"].append(f"{pending}: {type(exc).__name__}: {exc}")
for use in %(uses)r:
    folder = base / use
    if not folder.is_dir():
        continue
    for p in sorted(folder.iterdir()):
        if p.name.endswith(".tmp"):
            out["tmp_files"].append(str(p))
            continue
        try:
            found = certs(p.read_bytes())
            if len(found) != 1:
                raise ValueError(f"{len(found)} certificates")
            out["roots"].append([use, format(found[0].serial_number, "x"), fp(found[0]), p.name])
        except Exception as exc:
            out["bad_files"].append(f"{p}: {type(exc).__name__}: {exc}")
print(json.dumps(out))
''' % {"uses": ROOT_USES}


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def calls(links, action: str) -> list[tuple[int, dict]]:
    """(link index, payload) of every `action` CALL the station sent, in order."""
    return [(index, payload) for index, link in enumerate(links)
            for payload in link.calls(action)]


# ---- the firmware file server ------------------------------------------------------------

class FileServer:
    """HTTP/1.1 GET with Range on 127.0.0.1, sending at RATE bytes a second: the guest
    fetches http://10.0.2.2:PORT/<name>. Counts what it sent of each file."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.served: dict[str, int] = {}          # path -> highest byte offset sent
        self.ranges: list[tuple[str, str]] = []   # (path, Range header or "")
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def url(self, path: str) -> str:
        return f"http://10.0.2.2:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            lines = request.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in lines[1:] if line)}
            data = self.files.get(path)
            self.ranges.append((path, headers.get("range", "")))
            if method != "GET" or data is None:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
                return
            start = 0
            status = "200 OK"
            extra = ""
            if headers.get("range", "").startswith("bytes="):
                first = headers["range"][6:].split("-")[0]
                start = int(first) if first.isdigit() else 0
                if start >= len(data):
                    writer.write(f"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: "
                                 f"bytes */{len(data)}\r\nContent-Length: 0\r\n"
                                 f"Connection: close\r\n\r\n".encode())
                    return
                status = "206 Partial Content"
                extra = f"Content-Range: bytes {start}-{len(data) - 1}/{len(data)}\r\n"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\n"
                         f"Content-Length: {len(data) - start}\r\n{extra}"
                         f"Connection: close\r\n\r\n".encode())
            offset = start
            while offset < len(data):
                chunk = data[offset:offset + CHUNK]
                writer.write(chunk)
                await writer.drain()
                offset += len(chunk)
                self.served[path] = max(self.served.get(path, 0), offset)
                await asyncio.sleep(len(chunk) / RATE)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError,
                asyncio.LimitOverrunError, asyncio.CancelledError):
            pass   # the guest was cut mid-transfer, or the run ends: nothing to answer
        finally:
            try:
                await writer.drain()
            except OSError:
                pass
            writer.close()


# ---- what the host saw and found ---------------------------------------------------------

@dataclass
class Findings:
    firmware_cuts: list[tuple[str, str]] = field(default_factory=list)   # (group, detail)
    cert_cuts: list[tuple[str, str]] = field(default_factory=list)
    updates: dict[int, str] = field(default_factory=dict)        # requestId -> version
    outcomes: dict[int, str] = field(default_factory=dict)       # requestId -> final status
    invalid_paths: list[str] = field(default_factory=list)
    claimed_installed: list[str] = field(default_factory=list)   # Installed, old version runs
    install_unreported: list[str] = field(default_factory=list)  # new version runs, failure said
    no_final: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)             # UpdateFirmware not Accepted
    behind: list[str] = field(default_factory=list)              # job stage behind the CSMS
    partial_files: list[str] = field(default_factory=list)
    corrupted_downloads: list[str] = field(default_factory=list)
    file_checks: int = 0
    resumes: int = 0
    final_update: str = "not run"
    pair_checks: int = 0
    pair_problems: list[str] = field(default_factory=list)
    accepted_lost: list[str] = field(default_factory=list)
    pending_lost: list[str] = field(default_factory=list)
    old_pair: int = 0
    new_pair: int = 0
    bad_files: list[str] = field(default_factory=list)
    root_cuts_kept: int = 0
    root_cuts_absent: int = 0
    ids_checks: int = 0
    ids_disagree: list[str] = field(default_factory=list)
    stray: set[str] = field(default_factory=set)
    restart_checks: int = 0
    restarts: list[str] = field(default_factory=list)


class Lab:
    """One guest, its station, the CSMS, the file server and the two PKIs."""

    def __init__(self, run: Run, csms: Csms, server: FileServer, rng: random.Random,
                 findings: Findings, work: Path) -> None:
        self.run, self.csms, self.server, self.rng = run, csms, server, rng
        self.found = findings
        self.work = work
        self.vm = run.vm
        self.firmware_pki = make_firmware_pki("ec")
        now = datetime.now(timezone.utc).replace(microsecond=0)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = make_certificate("VM rig station CA", self.ca_key.public_key(), None,
                                   self.ca_key, now=now, ca=True)
        self.chains: dict[str, list[str]] = {}      # leaf fingerprint -> chain fingerprints
        self.current_leaf: str | None = None        # the pair the station has, as we know
        self.request_id = 100
        self.guest: dict = {}
        # How long the station takes to answer a certificate's delivery (send to answer,
        # seconds): a cut "during" lands within that.
        self.rtt: dict[str, list[float]] = {"CertificateSigned": [], "InstallCertificate": []}

    @property
    def links(self):
        return self.csms.links.get(STATION, [])

    # ---- set-up

    async def setup(self) -> None:
        await self.run.first_boot()
        for use, certificate in (("ManufacturerRootCertificate", self.firmware_pki.root_pem),
                                 ("CSMSRootCertificate", pem(self.ca))):
            sent = time.monotonic()
            answer = await self.run.link.call("InstallCertificate", {
                "certificateType": use, "certificate": certificate})
            if answer["status"] != "Accepted":
                raise VmError(f"InstallCertificate {use}: {answer}")
        # The second one: the first also loaded cryptography in the agent.
        self.rtt["InstallCertificate"].append(time.monotonic() - sent)
        (await self.vm.run("sync")).check("sync")
        boot = self.run.link.calls("BootNotification")[0]
        step(f"station registered, firmware {boot['chargingStation'].get('firmwareVersion')}; "
             f"manufacturer root and station CA root installed")
        await self.check_ids(await self.read_guest())

    # ---- helpers

    async def read_guest(self) -> dict:
        result = await self.vm.run("runuser", "-u", "station-agent", "--", "python3", "-c",
                                   GUEST_CHECK, timeout=60)
        if result.rc != 0:
            raise VmError(f"guest check: exit {result.rc}: {result.err.strip()[-800:]}")
        self.guest = json.loads(result.out)
        self.found.bad_files += [f"boot {self.vm.boots}: {b}" for b in self.guest["bad_files"]]
        self.found.stray.update(self.guest["tmp_files"])
        return self.guest

    async def cut(self) -> None:
        await self.vm.cut()
        self.run.record.cuts += 1

    async def check_restarts(self) -> None:
        """Whether systemd restarted the agent in this boot (a crash, the watchdog, a
        kill): none is expected. Asked at the start of each cycle and at the end, not
        just before a cut, which would move the cut's moment."""
        result = await self.vm.run("systemctl", "show", "-p", "NRestarts", "--value",
                                   "station-agent.service")
        self.found.restart_checks += 1
        if result.rc != 0 or result.out.strip() != "0":
            journal = await self.vm.run("journalctl", "-b", "-u", "station-agent", "-q",
                                        "-p", "warning", "--no-pager", "-n", "8")
            self.found.restarts.append(f"boot {self.vm.boots}: NRestarts="
                                       f"{result.out.strip() or result.err.strip()}: "
                                       f"{journal.out.strip()[-600:]}")

    async def boot_again(self) -> float:
        """Boot after a cut: the station registers, its database is whole, and its
        BootNotification says why it booted (PowerUp, or the reason it had recorded on
        purpose: FirmwareUpdate during an install)."""
        took = await self.vm.boot()
        self.run.record.boot_s.append(took)
        await self.run.registered()
        await self.run.check_db()
        self.run.note_boot_reason(("PowerUp", "FirmwareUpdate"))
        return took

    async def newest_link(self, timeout: float = 120):
        """The station's newest open link (the agent restarts itself after an install)."""
        link = await self.csms.wait_station(STATION, timeout=timeout)
        if link is not self.run.link:
            await link.expect_call("BootNotification", timeout=timeout)
            self.run.link = link
        return link

    # ---- firmware

    def statuses(self, request_id: int) -> list[tuple[int, str]]:
        return [(index, p["status"]) for index, p in calls(self.links, "FirmwareStatusNotification")
                if p.get("requestId") == request_id]

    def last_status(self, request_id: int) -> str | None:
        seen = self.statuses(request_id)
        return seen[-1][1] if seen else None

    async def publish(self, version: str) -> tuple[str, str, str]:
        """A signed mock image on the file server: (url, signature, sha256)."""
        data = mock_image(version, padding=IMAGE_BYTES)
        path = f"/fw/station-{version}.img"
        self.server.files[path] = data
        digest = hashlib.sha256(data).digest()
        return path, sign_digest(self.firmware_pki.signing_key, digest), digest.hex()

    async def update(self, version: str) -> tuple[int, str, str]:
        self.request_id += 1
        request_id = self.request_id
        path, signature, sha = await self.publish(version)
        past = format_datetime(datetime.now(timezone.utc) - timedelta(hours=1))
        answer = await self.run.link.call("UpdateFirmware", {
            "requestId": request_id, "retries": 2, "retryInterval": 5,
            "firmware": {"location": self.server.url(path), "retrieveDateTime": past,
                         "signingCertificate": self.firmware_pki.signing_cert_pem,
                         "signature": signature}})
        if answer["status"] != "Accepted":
            self.found.refused.append(f"request {request_id}: {answer}")
            raise VmError(f"UpdateFirmware {request_id} answered {answer}: the station is "
                          "stuck in an update")
        self.found.updates[request_id] = version
        return request_id, path, sha

    async def wait_until(self, check, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise VmError(f"gave up waiting for {what} ({timeout:g} s)")
            await asyncio.sleep(0.05)

    async def firmware_cycle(self, number: int, target: str) -> None:
        started = time.monotonic()
        await self.newest_link()
        await self.check_restarts()
        version = f"2.0.{number}"
        request_id, path, sha = await self.update(version)
        size = len(self.server.files[path])
        await self.wait_until(lambda: self.last_status(request_id) is not None, 60,
                              f"request {request_id}'s first status")
        if target == "downloading":
            fraction = self.rng.uniform(0.05, 0.95)
            await self.wait_until(lambda: self.server.served.get(path, 0) >= fraction * size,
                                  120, f"{fraction:.0%} of the image sent")
            moment = f"{fraction:.0%} of the image sent"
        elif target == "verifying/installing":
            # Anchored on what the station says, not on a time: the window from Downloaded
            # to InstallRebooting is one to three seconds, by the guest's load.
            # The mock installer takes tens of milliseconds: its window is that short.
            anchor = self.rng.choice(("Downloaded", "SignatureVerified", "Installing"))
            delay = self.rng.uniform(0, 0.04 if anchor == "Installing" else 0.5)
            await self.wait_until(
                lambda: anchor in [s for _, s in self.statuses(request_id)]
                or self.last_status(request_id) in FINAL, 180, anchor)
            await asyncio.sleep(delay)
            moment = f"{delay:.2f} s after {anchor} arrived"
        else:
            delay = self.rng.uniform(0, 8.0)
            await self.wait_until(
                lambda: self.last_status(request_id) in ("InstallRebooting", "Installed")
                or self.last_status(request_id) in FINAL, 180, "InstallRebooting")
            await asyncio.sleep(delay)
            moment = f"{delay:.2f} s after InstallRebooting arrived"
        sent = self.server.served.get(path, 0)
        heard = self.last_status(request_id)
        await self.cut()
        if heard == "Downloading" and sent < size:
            group, phase = "downloading", f"downloading ({sent * 100 // size}% sent)"
        elif heard == "Downloading":
            # All sent, Downloaded not heard: the last bytes in flight, the fsync, the rename.
            group, phase = "downloading", "end of the download (all sent, Downloaded not heard)"
        elif heard in ("Downloading", "Downloaded", "SignatureVerified", "InstallScheduled",
                       "Installing"):
            group, phase = "verifying/installing", f"verifying/installing (last heard {heard})"
        elif heard == "InstallRebooting":
            group, phase = "after", "after the install, agent restarting (last heard InstallRebooting)"
        else:
            group, phase = "after", f"after the update ended (last heard {heard})"
        self.found.firmware_cuts.append((group, phase))
        ranges_before = len(self.server.ranges)
        took = await self.boot_again()
        guest = await self.read_guest()
        self.check_job(request_id, heard, guest)
        self.check_files(request_id, sha, guest)
        # The update goes on (or ends) by itself; the agent may restart into the new version.
        await self.wait_until(lambda: self.last_status(request_id) in FINAL, 300,
                              f"a final status for request {request_id}")
        outcome = self.last_status(request_id)
        self.found.outcomes[request_id] = outcome
        await self.settle_after(request_id, version, outcome, heard)
        resumed = [r for p, r in self.server.ranges[ranges_before:] if p == path and r]
        self.found.resumes += bool(resumed)
        self.run.record.cycle_s.append(time.monotonic() - started)
        again = [r for p, r in self.server.ranges[ranges_before:] if p == path]
        fetch = ("" if not again else f", download resumed with {resumed[0]}" if resumed
                 else ", download started again from byte 0 (nothing of it was on the disk)")
        step(f"firmware cut {number}: {phase}, {moment}; up again in {took:.1f} s; "
             f"request {request_id} ended {outcome}{fetch}")

    def check_job(self, request_id: int, heard: str | None, guest: dict) -> None:
        """What the station kept must not be behind what the CSMS heard from it: a status
        goes out only once its stage is committed."""
        job = guest["job"]
        if job is None or heard is None or heard in FINAL:
            return
        if job["request_id"] != request_id:
            self.found.behind.append(f"request {request_id}: the persisted job is "
                                     f"{job['request_id']}")
        elif heard in STAGES and STAGES.index(job["stage"]) < STAGES.index(heard):
            self.found.behind.append(f"request {request_id}: CSMS heard {heard}, the station "
                                     f"kept {job['stage']}")

    def check_files(self, request_id: int, sha: str, guest: dict) -> None:
        """A file at an image's final name (not .part) is the whole image."""
        self.found.file_checks += 1
        for folder, files in guest["firmware_files"].items():
            for name, entry in files.items():
                if name.endswith(".part"):
                    continue
                if folder != str(request_id) or entry.get("sha256") != sha:
                    self.found.partial_files.append(
                        f"boot {self.vm.boots}: firmware/{folder}/{name} ({entry['size']} "
                        f"bytes, sha256 {str(entry.get('sha256'))[:12]})")

    async def settle_after(self, request_id: int, version: str, outcome: str,
                           heard: str | None) -> None:
        # The link that carried the outcome; if it was Installed, the agent runs anew.
        link = await self.newest_link()
        boot = link.calls("BootNotification")[0]
        running = boot["chargingStation"].get("firmwareVersion")
        if boot["reason"] == "FirmwareUpdate" and outcome == "Installed":
            # The agent exec'd itself into the new version: give systemd the time it
            # would take to disown that PID (TimeoutStopSec=10s), then ask it.
            await asyncio.sleep(12)
            await self.check_restarts()
        guest = await self.read_guest()
        if outcome == "Installed" and (running != version or guest["version_file"] != version):
            self.found.claimed_installed.append(
                f"request {request_id}: Installed, but {running} runs "
                f"(version file {guest['version_file']})")
        if outcome != "Installed" and guest["version_file"] == version:
            self.found.install_unreported.append(
                f"request {request_id}: {outcome}, but the version file says {version}")
        if outcome == "InvalidSignature" and heard in ("Downloading",):
            self.found.corrupted_downloads.append(f"request {request_id}: {outcome} after a "
                                                  "cut during the download")
        if guest["job"] is not None:
            self.found.behind.append(f"request {request_id}: ended {outcome} but a job is "
                                     f"still kept: {guest['job']['stage']}")
        leftovers = {k: v for k, v in guest["firmware_files"].items() if v}
        if leftovers:
            self.found.partial_files.append(f"request {request_id} ended, files left: "
                                            f"{leftovers}")
        self.check_path(request_id)

    def check_path(self, request_id: int) -> None:
        """Every status follows one Figure 119 allows; a repeat of the status just sent
        is a retry (the answer was lost to the cut)."""
        previous = None
        for _, status in self.statuses(request_id):
            if status == previous:
                continue
            if status not in NEXT.get(previous, set()):
                self.found.invalid_paths.append(
                    f"request {request_id}: {previous} -> {status} "
                    f"({[s for _, s in self.statuses(request_id)]})")
                return
            previous = status
        if previous not in FINAL:
            self.found.no_final.append(f"request {request_id}: last {previous}")

    async def final_update(self, number: int) -> None:
        """An update with no cut after all the cut ones: it must go through."""
        version = f"2.0.{number}"
        await self.newest_link()
        request_id, path, sha = await self.update(version)
        await self.wait_until(lambda: self.last_status(request_id) in FINAL, 300,
                              f"a final status for request {request_id}")
        outcome = self.last_status(request_id)
        self.found.outcomes[request_id] = outcome
        await self.settle_after(request_id, version, outcome, None)
        boot = self.run.link.calls("BootNotification")[0]
        running = boot["chargingStation"].get("firmwareVersion")
        self.found.final_update = (f"{outcome}, {running} runs" if outcome == "Installed"
                                   and running == version else
                                   f"FAILED: {outcome}, {running} runs (wanted {version})")
        step(f"firmware update {request_id} without a cut: {self.found.final_update}")

    # ---- certificates

    def sign(self, csr_pem: str) -> tuple[str, list[str]]:
        """The CertificateSigned chain for a CSR (leaf, then the CA) and its fingerprints."""
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        cn = csr.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
        leaf = make_certificate(str(cn), csr.public_key(), self.ca, self.ca_key,
                                now=datetime.now(timezone.utc).replace(microsecond=0),
                                eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
        prints = [fingerprint(leaf), fingerprint(self.ca)]
        self.chains[prints[0]] = prints
        return pem(leaf, self.ca), prints

    async def cert_cycle(self, number: int, target: str) -> None:
        started = time.monotonic()
        await self.newest_link()
        await self.check_restarts()
        if target == "InstallCertificate":
            await self.root_cycle(number)
        else:
            await self.pair_cycle(number, target)
        self.run.record.cycle_s.append(time.monotonic() - started)

    async def pair_cycle(self, number: int, target: str) -> None:
        link = self.run.link
        before = len(link.calls("SignCertificate"))
        answer = await link.call("TriggerMessage",
                                 {"requestedMessage": "SignChargingStationCertificate"})
        if answer["status"] != "Accepted":
            raise VmError(f"TriggerMessage SignChargingStationCertificate: {answer}")
        await self.wait_until(lambda: len(link.calls("SignCertificate")) > before, 60,
                              "SignCertificate")
        csr = link.calls("SignCertificate")[before]["csr"]
        chain_pem, prints = self.sign(csr)
        csr_key = hashlib.sha256(x509.load_pem_x509_csr(csr.encode()).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
        old = self.current_leaf
        answered: dict = {}
        task = None
        if target == "before":
            delay = self.rng.uniform(0, 2.0)
            await asyncio.sleep(delay)
            moment = f"{delay:.2f} s after SignCertificate, before CertificateSigned"
        else:
            async def deliver() -> None:
                sent = time.monotonic()
                answered["reply"] = await link.call("CertificateSigned", {
                    "certificateChain": chain_pem,
                    "certificateType": "ChargingStationCertificate"}, timeout=60)
                self.rtt["CertificateSigned"].append(time.monotonic() - sent)
            task = asyncio.create_task(deliver())
            if target == "during":
                delay = self.rng.uniform(0.2, 1.0) * self.window("CertificateSigned")
                await asyncio.sleep(delay)
                moment = f"{delay:.3f} s after CertificateSigned was sent"
            else:
                await asyncio.wait({task}, timeout=60)
                delay = self.rng.uniform(0, 1.5)
                await asyncio.sleep(delay)
                moment = f"{delay:.2f} s after its answer"
        await self.cut()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        reply = answered.get("reply")
        status = reply["status"] if reply else None
        phase = {"before": "before CertificateSigned",
                 "during": f"during CertificateSigned ({'answered ' + status if status else 'not answered yet'})",
                 "after answer": f"after CertificateSigned was answered {status}"}[target]
        self.found.cert_cuts.append((target, phase))
        took = await self.boot_again()
        guest = await self.read_guest()
        on_disk = self.check_pair(guest, old, prints[0], status == "Accepted", number)
        if target == "before" or on_disk == old:
            # The CSR went out before the cut: its key was on the disk before it did, so a
            # certificate the CA issues late still fits the station (A02.FR.17's repeats
            # rely on the same).
            if guest["pending_key"] != csr_key:
                self.found.pending_lost.append(
                    f"cut {number}: the key of the CSR sent before the cut is not pending "
                    f"({'another key' if guest['pending_key'] else 'none'})")
            else:
                late = await self.run.link.call("CertificateSigned", {
                    "certificateChain": chain_pem,
                    "certificateType": "ChargingStationCertificate"}, timeout=60)
                if late["status"] != "Accepted":
                    self.found.pair_problems.append(f"cut {number}: the certificate for the "
                                                    f"pending key refused after the boot: {late}")
                guest = await self.read_guest()
                self.check_pair(guest, old, prints[0], late["status"] == "Accepted", number,
                                count=False)
                phase += ", delivered after the boot"
        await self.check_ids(guest)
        step(f"certificate cut {number}: {phase}, {moment}; up again in {took:.1f} s; "
             f"pair on disk: {self.describe_leaf(self.current_leaf, old, prints[0])}")

    def window(self, action: str) -> float:
        """Seconds after sending `action` within which a cut lands while the station
        handles it: within its quickest answer so far (tens of milliseconds: parsing,
        checking, two fsynced files and a rename), 0.6 s before any was measured."""
        return min(self.rtt[action], default=0.6)

    def describe_leaf(self, leaf: str | None, old: str | None, new: str) -> str:
        return "new" if leaf == new else "old" if leaf == old and old else \
            "none" if leaf is None else "unknown"

    def check_pair(self, guest: dict, old: str | None, new: str, must_be_new: bool,
                   number: int, count: bool = True) -> str | None:
        self.found.pair_checks += 1
        pair = guest["station"]
        leaf = None
        if pair is None:
            if old is not None:
                self.found.pair_problems.append(f"cut {number}: no station pair, had {old[:12]}")
        elif "error" in pair or not pair.get("match") or not pair.get("ssl"):
            self.found.pair_problems.append(f"cut {number}: {pair}")
        else:
            leaf = pair["chain"][0]
            if leaf not in (old, new) or pair["chain"] != self.chains.get(leaf):
                self.found.pair_problems.append(
                    f"cut {number}: chain on disk {[p[:12] for p in pair['chain']]} is neither "
                    f"the old nor the new one whole")
        if must_be_new and leaf != new:
            self.found.accepted_lost.append(f"cut {number}: CertificateSigned answered Accepted "
                                            f"but the pair on disk is "
                                            f"{self.describe_leaf(leaf, old, new)}")
        if count and leaf is not None:
            if leaf == new:
                self.found.new_pair += 1
            elif leaf == old:
                self.found.old_pair += 1
        if leaf is not None:
            self.current_leaf = leaf
        return leaf

    async def root_cycle(self, number: int) -> None:
        use = ("MORootCertificate", "V2GRootCertificate")[number % 2]
        key = ec.generate_private_key(ec.SECP256R1())
        root = make_certificate(f"VM rig cut root {number}", key.public_key(), None, key,
                                now=datetime.now(timezone.utc).replace(microsecond=0), ca=True)
        link = self.run.link
        answered: dict = {}

        async def install() -> None:
            sent = time.monotonic()
            answered["reply"] = await link.call("InstallCertificate", {
                "certificateType": use, "certificate": pem(root)}, timeout=60)
            self.rtt["InstallCertificate"].append(time.monotonic() - sent)

        task = asyncio.create_task(install())
        delay = self.rng.uniform(0.2, 1.0) * self.window("InstallCertificate")
        await asyncio.sleep(delay)
        await self.cut()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        reply = answered.get("reply")
        status = reply["status"] if reply else None
        self.found.cert_cuts.append(("InstallCertificate", f"InstallCertificate {use}: answer {status}"))
        took = await self.boot_again()
        guest = await self.read_guest()
        present = any(fp == fingerprint(root) for _, _, fp, _ in guest["roots"])
        if present:
            self.found.root_cuts_kept += 1
        else:
            self.found.root_cuts_absent += 1
        if status == "Accepted" and not present:
            self.found.accepted_lost.append(f"cut {number}: InstallCertificate {use} answered "
                                            "Accepted but the root is not stored")
        await self.check_ids(guest)
        step(f"certificate cut {number}: InstallCertificate {use}, {delay:.3f} s after it was "
             f"sent, answer {status}; up again in {took:.1f} s; root "
             f"{'stored' if present else 'not stored'}")

    async def check_ids(self, guest: dict) -> None:
        """GetInstalledCertificateIds lists exactly the roots whose files are there."""
        self.found.ids_checks += 1
        answer = await self.run.link.call("GetInstalledCertificateIds", {})
        listed = sorted((c["certificateType"], int(c["certificateHashData"]["serialNumber"], 16))
                        for c in answer.get("certificateHashDataChain", []))
        files = sorted((use, int(serial, 16)) for use, serial, _, _ in guest["roots"])
        if listed != files:
            self.found.ids_disagree.append(f"boot {self.vm.boots}: listed {listed}, files {files}")


def spread(targets: tuple[str, ...], count: int, rng: random.Random) -> list[str]:
    """`count` targets, each as often as the others (give or take one), in seeded order."""
    chosen = [targets[i % len(targets)] for i in range(count)]
    rng.shuffle(chosen)
    return chosen


def summary(found: Findings, record: Record, csms: Csms, seed: int) -> bool:
    groups = {g: sum(1 for c, _ in found.firmware_cuts if c == g) for g in FIRMWARE_TARGETS}
    cert_groups = {g: sum(1 for c, _ in found.cert_cuts if c == g) for g in CERT_TARGETS}
    outcomes: dict[str, int] = {}
    for status in found.outcomes.values():
        outcomes[status] = outcomes.get(status, 0) + 1
    lines = [
        (bool(found.firmware_cuts),
         f"firmware cuts: {len(found.firmware_cuts)} done (seed {seed}) "
         f"({groups['downloading']} downloading, {groups['verifying/installing']} "
         f"verifying/installing, {groups['after']} after), {found.resumes} downloads resumed "
         f"with a Range"),
        (not found.invalid_paths and not found.no_final and not found.behind,
         f"firmware statuses: {len(found.outcomes)} updates "
         f"({', '.join(f'{n} {s}' for s, n in sorted(outcomes.items()))}), "
         f"{len(found.invalid_paths)} not a Figure 119 path, {len(found.no_final)} without a "
         f"final status, {len(found.behind)} station records behind what the CSMS heard"),
        (not found.claimed_installed and not found.install_unreported,
         f"firmware outcome: {len(found.claimed_installed)} claimed Installed without the new "
         f"version running, {len(found.install_unreported)} installed but reported failed"),
        (not found.partial_files and not found.corrupted_downloads,
         f"firmware files: {found.file_checks} checks after boots, {len(found.partial_files)} "
         f"partial or stray files at a final name, {len(found.corrupted_downloads)} downloads "
         f"a cut corrupted (InvalidSignature)"),
        (not found.refused and found.final_update.split(",")[0] == "Installed",
         f"firmware not stuck: {len(found.updates)} UpdateFirmware Accepted, "
         f"{len(found.refused)} refused; the update after the last cut: {found.final_update}"),
        (bool(found.cert_cuts),
         f"certificate cuts: {len(found.cert_cuts)} done ({cert_groups['before']} before "
         f"CertificateSigned, {cert_groups['during']} during, {cert_groups['after answer']} "
         f"after its answer, {cert_groups['InstallCertificate']} during InstallCertificate)"),
        (not found.pair_problems and not found.accepted_lost and not found.pending_lost,
         f"key pairs: {found.pair_checks} checks, {len(found.pair_problems)} mismatched, "
         f"truncated or unknown, {len(found.accepted_lost)} answered Accepted but lost, "
         f"{len(found.pending_lost)} pending keys lost; after the cuts {found.old_pair} old "
         f"pair, {found.new_pair} new pair; station connected after every boot"),
        (not found.bad_files and not found.ids_disagree,
         f"stored certificates: {len(found.bad_files)} unreadable or truncated files, "
         f"InstallCertificate cut: {found.root_cuts_kept} stored, {found.root_cuts_absent} not; "
         f"{found.ids_checks} GetInstalledCertificateIds, {len(found.ids_disagree)} disagreeing "
         f"with the files"),
        (not record.wrong_reasons,
         f"boot reasons after cuts: {', '.join(f'{n} {r}' for r, n in sorted(record.boot_reasons.items()))}"
         f" ({len(record.wrong_reasons)} not PowerUp or the recorded FirmwareUpdate)"),
        (not found.restarts,
         f"service: {found.restart_checks} checks of systemd's NRestarts, "
         f"{len(found.restarts)} boots where systemd restarted the agent (crash, watchdog, kill)"),
        (not record.corrupt, f"databases: {record.db_checks} integrity checks after boots, "
                             f"{len(record.corrupt)} corrupt or not opening"),
        (not record.model_changed and not record.security_log_lost,
         f"device model and security log: {len(record.model_changed)} stored values changed, "
         f"{len(record.security_log_lost)} security logs not kept"),
        (not csms.schema_errors, f"schema: {len(csms.schema_errors)} invalid frames"),
    ]
    for detail in (found.invalid_paths, found.no_final, found.behind, found.claimed_installed,
                   found.install_unreported, found.partial_files, found.corrupted_downloads,
                   found.refused, found.pair_problems, found.accepted_lost, found.pending_lost,
                   found.bad_files, found.ids_disagree, record.wrong_reasons, found.restarts,
                   record.corrupt, record.model_changed,
                   record.security_log_lost, csms.schema_errors):
        if detail:
            print(f"  detail: {str(detail)[:1500]}")
    if found.stray:
        print(f"  note: temporary files left by cuts (ignored, removed when the store "
              f"opens): {len(found.stray)}")
    ok = all(good for good, _ in lines)
    for good, text in lines:
        print(f"{'PASS' if good else 'FAIL'} {text}", flush=True)
    if record.boot_s:
        print(f"timing: boot {sum(record.boot_s) / len(record.boot_s):.1f} s mean "
              f"(max {max(record.boot_s):.1f}), cycle {sum(record.cycle_s) / max(1, len(record.cycle_s)):.1f} s mean, "
              f"whole run {time.monotonic() - T0:.0f} s", flush=True)
    return ok


T0 = time.monotonic()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--cuts", type=int, default=8, help="firmware cuts (default 8)")
    parser.add_argument("--cert-cuts", type=int, default=8,
                        help="certificate cuts (default 8)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="station-agent-install-cuts."))
    work.mkdir(parents=True, exist_ok=True)
    step(f"install cuts: {args.cuts} firmware, {args.cert_cuts} certificate; seed {seed} "
         f"(again: --seed {seed}), work {work}")
    frames = (work / "csms-frames.log").open("w")

    def log_frame(station: str, direction: str, text: str) -> None:
        frames.write(f"{time.strftime('%H:%M:%S')} {station} "
                     f"{'->' if direction == 'in' else '<-'} {text[:4000]}\n")

    async def firmware_status(payload: dict) -> dict:
        if payload.get("status") == "SignatureVerified":
            await asyncio.sleep(SIGNATURE_ANSWER_DELAY_S)
        return {}

    ok = False
    vm = None
    record = Record()
    found = Findings()
    server = FileServer()
    try:
        await server.start()
        async with Csms("127.0.0.1", free_port(), passwords={STATION: PASSWORD},
                        on_frame=log_frame) as csms:
            csms.responders["FirmwareStatusNotification"] = firmware_status
            vm = Vm(args.image, work / "vm")
            step(f"guest under QEMU with {vm.accel.upper()} ({vm.accel_why}); CSMS {csms.url}, "
                 f"files on http://127.0.0.1:{server.port} (10.0.2.2 in the guest)")
            run = Run(vm, csms, random.Random(f"{seed}/run"), record, STATION)
            lab = Lab(run, csms, server, rng, found, work)
            await lab.setup()
            for number, target in enumerate(spread(FIRMWARE_TARGETS, args.cuts, rng), 1):
                await lab.firmware_cycle(number, target)
            await lab.final_update(args.cuts + 1)
            for number, target in enumerate(spread(CERT_TARGETS, args.cert_cuts, rng), 1):
                await lab.cert_cycle(number, target)
            await lab.check_restarts()
            await vm.poweroff()
            ok = summary(found, record, csms, seed)
    except (VmError, asyncio.TimeoutError, ConnectionError) as exc:
        print(f"FAILED: {exc!r}", flush=True)
        traceback.print_exc()
        if vm is not None:
            print(f"--- console (last lines)\n{vm.console_tail()}", flush=True)
    finally:
        if vm is not None:
            await vm.cut()
        await server.stop()
        frames.close()
        if ok and not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if not ok:
        print(f"install-cut run FAILED; logs in {work}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
