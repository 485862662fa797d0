"""A private network for a guest whose TCP peer must be a real Linux stack.

QEMU's user networking (slirp) ends the guest's TCP connections inside QEMU: the
segments the guest receives, the CSMS's ACKs among them, are slirp's, not a kernel's.
For real byte counts and for lossy links the guest needs a real kernel on the other end
too. So a script that needs one runs itself again inside a network namespace of its own
(`ip netns add`), holding a tap device `tap0` with 10.0.2.2/24 (the address the guest's
static network file already names as its gateway) and a loopback. QEMU attaches the
guest's NIC to tap0, the host-side server listens on 10.0.2.2, and nothing of it is
reachable from, or reaches, any other network: the namespace has no other interface and
disappears when the script ends.

    if __name__ == "__main__":
        outside = netns.reexec_in_private_net()   # None once inside
        sys.exit(outside if outside is not None else main())

Needs root (CAP_NET_ADMIN) and iproute2.
"""

from __future__ import annotations

import os
import subprocess
import sys

TAP = "tap0"
HOST_ADDRESS = "10.0.2.2"     # the guest's gateway in tests/vm/guest/80-vm.network
GUEST_ADDRESS = "10.0.2.15"
_MARK = "VM_PRIVATE_NETNS"


def _ip(*argv: str, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "ip", *argv], check=True, capture_output=True, text=True)


def inside() -> bool:
    return bool(os.environ.get(_MARK))


def reexec_in_private_net() -> int | None:
    """In the namespace: None (go on). Outside: run this script again inside a fresh
    namespace, remove the namespace after it, and return its exit status."""
    if inside():
        return None
    name = f"station-vm-{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except (OSError, subprocess.CalledProcessError) as exc:
        err = getattr(exc, "stderr", "") or exc
        print(f"FAIL: cannot make a network namespace (needs root and iproute2): {err}",
              file=sys.stderr)
        return 1
    try:
        _ip("link", "set", "lo", "up", netns=name)
        _ip("tuntap", "add", "dev", TAP, "mode", "tap", netns=name)
        _ip("addr", "add", f"{HOST_ADDRESS}/24", "dev", TAP, netns=name)
        _ip("link", "set", TAP, "up", netns=name)
        env = {**os.environ, _MARK: name}
        return subprocess.run(["ip", "netns", "exec", name, sys.executable, *sys.argv],
                              env=env).returncode
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
