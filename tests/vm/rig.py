"""The VM rig: a bookworm guest (tests/vm/build-image) under qemu-system-x86_64, for
tests that need a real kernel: real power cuts, SocketCAN, netem, real byte counts.

    vm = Vm(image_dir, work_dir)          # a private copy of the cached disk
    await vm.boot()                       # QEMU up, systemd running, control channel open
    result = await vm.run("systemctl", "is-active", "station-agent")
    await vm.cut()                        # a power cut: SIGKILL to QEMU and to the disk
    await vm.boot()                       # again, on the same disk
    await vm.poweroff()

The disk. QEMU's virtio-blk reaches the disk image through nbdkit's cache filter in
writeback mode (`nbdkit --filter=cache file disk.raw cache=writeback`): a guest write
lands in nbdkit's cache (an unlinked temporary file) and reaches disk.raw only when the
guest flushes (FLUSH, which Linux sends for fsync, a journal commit, ...). The guest sees
a disk with a volatile write cache. `cut()` kills QEMU and nbdkit together, so a cut loses
what a real power cut loses: the guest's page cache and every write the guest did not
flush, and keeps everything the guest had flushed. QEMU's own cache modes cannot do this:
with cache=none (O_DIRECT) or writeback the host kernel keeps what QEMU wrote, flushed or
not, when QEMU dies; only a host crash would drop it. `disk_model_check()` shows the
difference on a scratch disk in every run.

The control channel is a virtio-serial port (`vmrig.control`, served in the guest by
tests/vm/guest/vm-control), not the network, so tests can break the guest's network and
still drive it. The guest's network is QEMU user networking: the guest is 10.0.2.15 and
reaches the host's 127.0.0.1 as 10.0.2.2 (host-side servers listen on 127.0.0.1 only);
nothing in the guest is reachable from outside. With `tap=` the NIC is on a tap device of
a private network namespace instead (netns.py), where the host side is 10.0.2.2 itself:
then the guest's TCP peer is a real kernel, not QEMU's slirp.

Without /dev/kvm QEMU runs with TCG (slow; timeouts are scaled by `Vm.slowdown`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CONTROL_PORT = "vmrig.control"
KERNEL_CMDLINE = ("root=/dev/vda rw console=ttyS0 panic=-1 quiet mitigations=off "
                  "systemd.show_status=false net.ifnames=1")


class VmError(Exception):
    pass


@dataclass(frozen=True)
class RunResult:
    rc: int
    out: str
    err: str

    def check(self, what: str) -> RunResult:
        if self.rc != 0:
            raise VmError(f"{what}: exit {self.rc}\n{self.out}{self.err}")
        return self


def accelerator() -> tuple[str, str]:
    """("kvm" or "tcg", why). KVM needs /dev/kvm and hardware virtualisation (vmx or svm
    in the CPU flags): a /dev/kvm without them (kvm_pvm, the paravirtual KVM of some cloud
    VMs) runs only PVM-aware guest kernels, and Debian's stock kernel makes no progress
    under it. VM_ACCEL=kvm or tcg overrides."""
    forced = os.environ.get("VM_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced, f"VM_ACCEL={forced}"
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError as exc:
        return "tcg", f"no usable /dev/kvm ({exc.strerror})"
    try:
        flags = next((line.split(":", 1)[1].split() for line in
                      Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    if "vmx" not in flags and "svm" not in flags:
        pvm = " (kvm_pvm)" if Path("/sys/module/kvm_pvm").exists() else ""
        return "tcg", (f"/dev/kvm{pvm} without hardware virtualisation (no vmx/svm): "
                       "Debian's kernel does not boot under it")
    return "kvm", "/dev/kvm with hardware virtualisation"


class _Disk:
    """One disk image served by nbdkit with a writeback cache; see the module docstring."""

    def __init__(self, path: Path, socket_path: Path, log: Path) -> None:
        self.path, self.socket, self.log = path, socket_path, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        cache_dir = self.socket.parent / "nbdkit-tmp"
        cache_dir.mkdir(exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                ["nbdkit", "--foreground", "--unix", str(self.socket), "--filter=cache",
                 "file", f"file={self.path}", "cache=writeback"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, "TMPDIR": str(cache_dir)})
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise VmError(f"nbdkit for {self.path.name} did not start: "
                              f"{self.log.read_text(errors='replace')[-1000:]}")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        """A clean stop, for after the guest powered off (it flushed everything)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


class Vm:
    """One guest on a private copy of the image's disk; boots, cuts and boots again."""

    def __init__(self, image: Path, work: Path, *, memory_mb: int = 1024, cpus: int = 2,
                 scratch_mb: int = 16, tap: str | None = None) -> None:
        self.image, self.work = Path(image), Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.disk_path = self.work / "disk.raw"
        # A sparse copy (a reflink where the file system can): the cached image stays clean.
        subprocess.run(["cp", "--sparse=always", "--reflink=auto",
                        str(self.image / "disk.raw"), str(self.disk_path)], check=True)
        # The kernel and initrd too: a newer build-image removes older images from the
        # cache, which must not pull them from under a guest that boots again later.
        for name in ("vmlinuz", "initrd.img"):
            shutil.copyfile(self.image / name, self.work / name)
        self.scratch_path = self.work / "scratch.raw"
        with self.scratch_path.open("wb") as f:
            f.truncate(scratch_mb << 20)
        self.memory_mb, self.cpus = memory_mb, cpus
        # None: QEMU's user networking; else a tap device to attach the NIC to (netns.py).
        self.tap = tap
        self.accel, self.accel_why = accelerator()
        self.kvm = self.accel == "kvm"
        self.slowdown = 1 if self.kvm else 3
        self.console_log = self.work / "console.log"
        self.control_socket = self.work / "control.sock"
        self.disks = [_Disk(self.disk_path, self.work / "vda.sock", self.work / "nbdkit.log"),
                      _Disk(self.scratch_path, self.work / "vdb.sock", self.work / "nbdkit.log")]
        self.qemu: asyncio.subprocess.Process | None = None
        self.boots = 0
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None

    # ---- power

    def qemu_argv(self) -> list[str]:
        # QEMU's default CPU model, not -cpu host: under nested KVM (this CI machine)
        # -cpu host dies setting MSR 0x10a (IA32_ARCH_CAPABILITIES).
        accel = ["-enable-kvm"] if self.kvm else ["-accel", "tcg,thread=multi"]
        drives = []
        for index, disk in enumerate(self.disks):
            # cache=none: no host page cache in QEMU's path (nbd has none anyway); the
            # guest sees a volatile write cache (WCE) and sends FLUSH, which nbdkit's
            # writeback cache honours by writing through to the file.
            drives += ["-drive", f"if=none,id=d{index},format=raw,cache=none,"
                                 f"file=nbd:unix:{disk.socket}",
                       "-device", f"virtio-blk-pci,drive=d{index}"]
        return ["qemu-system-x86_64", *accel, "-m", str(self.memory_mb),
                "-smp", str(self.cpus), "-nodefaults", "-no-user-config", "-display", "none",
                "-no-reboot",
                "-kernel", str(self.work / "vmlinuz"), "-initrd", str(self.work / "initrd.img"),
                "-append", KERNEL_CMDLINE,
                *drives,
                "-netdev", (f"tap,id=net0,ifname={self.tap},script=no,downscript=no"
                            if self.tap else "user,id=net0"),
                "-device", "virtio-net-pci,netdev=net0",
                "-device", "virtio-serial-pci",
                "-chardev", f"socket,id=ctl,path={self.control_socket},server=on,wait=off",
                "-device", f"virtserialport,chardev=ctl,name={CONTROL_PORT}",
                "-chardev", f"file,id=con,path={self.console_log},append=on",
                "-serial", "chardev:con"]

    async def start(self) -> None:
        """Power on: the disks, then QEMU; returns once the control socket is connected."""
        if self.qemu is not None:
            raise VmError("already running")
        self.boots += 1
        with self.console_log.open("a") as log:
            log.write(f"\n===== boot {self.boots} =====\n")
        for disk in self.disks:
            disk.start()
        self.control_socket.unlink(missing_ok=True)
        self._qemu_log = (self.work / "qemu.log").open("ab")
        self.qemu = await asyncio.create_subprocess_exec(
            *self.qemu_argv(), stdin=subprocess.DEVNULL, stdout=self._qemu_log,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10 * self.slowdown
        while True:
            if self.qemu.returncode is not None:
                raise VmError(f"qemu exited {self.qemu.returncode}: "
                              f"{(self.work / 'qemu.log').read_text(errors='replace')[-2000:]}")
            try:
                reader, self._writer = await asyncio.open_unix_connection(str(self.control_socket))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise VmError("qemu's control socket did not appear") from None
                await asyncio.sleep(0.05)
        self._reader_task = asyncio.create_task(self._read_replies(reader))

    async def boot(self, timeout: float = 120) -> float:
        """Power on and wait until the guest's systemd has finished booting (running or
        degraded); the seconds it took."""
        started = time.monotonic()
        await self.start()
        deadline = started + timeout * self.slowdown
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise VmError(f"boot {self.boots}: not up within {timeout * self.slowdown:g} s; "
                              f"console:\n{self.console_tail()}")
            try:
                result = await self.run("systemctl", "is-system-running", "--wait",
                                        timeout=min(remaining, 60))
            except asyncio.TimeoutError:
                continue
            state = result.out.strip()
            if state in ("running", "degraded"):
                return time.monotonic() - started
            if state not in ("initializing", "starting"):
                raise VmError(f"boot {self.boots}: system {state!r}")

    async def cut(self) -> None:
        """A power cut: SIGKILL to QEMU and to the disks' nbdkit, nothing flushed."""
        if self.qemu is not None and self.qemu.returncode is None:
            self.qemu.send_signal(signal.SIGKILL)
        for disk in self.disks:
            disk.kill()
        await self._reap()

    async def poweroff(self, timeout: float = 60) -> None:
        """A clean shutdown (the guest flushes its disks), then the disks stop."""
        if self.qemu is None:
            return
        try:
            await self.run("systemctl", "poweroff", "--no-block", timeout=10)
            await asyncio.wait_for(self.qemu.wait(), timeout * self.slowdown)
        except (asyncio.TimeoutError, VmError, ConnectionError):
            await self.cut()
            return
        for disk in self.disks:
            disk.stop()
        await self._reap()

    async def _reap(self) -> None:
        if self.qemu is not None:
            await self.qemu.wait()
            self._qemu_log.close()
        self.qemu = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)
            self._reader_task = None
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(VmError("the VM went away"))
        self._waiting.clear()

    # ---- commands in the guest

    async def run(self, *argv: str, input: str = "", timeout: float = 60) -> RunResult:
        """Run argv in the guest as root; its exit status and output. Raises
        asyncio.TimeoutError if no answer comes within `timeout` s."""
        if self._writer is None:
            raise VmError("the VM is not running")
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        request = {"id": request_id, "argv": list(argv), "input": input,
                   "timeout": timeout * self.slowdown}
        try:
            self._writer.write((json.dumps(request) + "\n").encode())
            await self._writer.drain()
            reply = await asyncio.wait_for(future, timeout * self.slowdown + 5)
        finally:
            self._waiting.pop(request_id, None)
        return RunResult(reply["rc"], reply["out"], reply["err"])

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            future = self._waiting.get(reply.get("id"))
            if future is not None and not future.done():
                future.set_result(reply)

    async def write_file(self, path: str, text: str, mode: str = "644",
                         owner: str = "root:root") -> None:
        (await self.run("sh", "-c", f'umask 077; cat > "$1" && chmod {mode} "$1" && chown {owner} "$1"',
                        "sh", path, input=text)).check(f"writing {path}")

    def console_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.console_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no console log)"

    # ---- the disk model, shown

    async def disk_model_check(self) -> tuple[bool, bool]:
        """Shows what a cut loses, on the scratch disk /dev/vdb: a block written with
        O_DIRECT (past the guest's page cache, into the disk's volatile cache) and not
        flushed is gone after a cut; one written the same way and then flushed is there.
        (lost_unflushed, kept_flushed). Leaves the VM cut; boot() again after it."""
        flushed, unflushed = os.urandom(8).hex(), os.urandom(8).hex()
        script = ('printf "%-4096s" "$1" | dd of=/dev/vdb bs=4096 seek=0 oflag=direct status=none'
                  ' && blockdev --flushbufs /dev/vdb && sync /dev/vdb'
                  ' && printf "%-4096s" "$2" | dd of=/dev/vdb bs=4096 seek=1 oflag=direct status=none')
        (await self.run("sh", "-c", script, "sh", flushed, unflushed)).check("scratch writes")
        await self.cut()
        data = self.scratch_path.read_bytes()[:8192]
        return unflushed.encode() not in data, flushed.encode() in data[:4096]

    def discard(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
