"""Which reason the BootNotification gives, from what the previous run left behind."""

import pytest

from agent.blocks.provisioning import decide_boot_reason


@pytest.mark.parametrize("pending, last_start, clean, system_boot, reason", [
    (None, None, False, 1000.0, "PowerUp"),            # first start ever
    (None, 500.0, True, 1000.0, "PowerUp"),            # the machine booted since our last start
    (None, 2000.0, True, 1000.0, "LocalReset"),        # systemctl restart, same boot
    (None, 2000.0, False, 1000.0, "ApplicationReset"),  # crashed or killed, same boot
    ("RemoteReset", 2000.0, False, 1000.0, "RemoteReset"),  # Reset from the CSMS, even if cut short
    ("FirmwareUpdate", 500.0, True, 1000.0, "FirmwareUpdate"),
    (None, 2000.0, True, None, "LocalReset"),          # no /proc/stat: trust our own record
])
def test_boot_reason(pending, last_start, clean, system_boot, reason):
    assert decide_boot_reason(pending, last_start, clean, system_boot) == reason


def test_an_accepted_boot_uses_up_only_the_reason_it_reported(tmp_path):
    """Seen under load: a resumed firmware download installed before the boot of that run
    was accepted; the acceptance then wiped the FirmwareUpdate recorded for the restart,
    which came back as ApplicationReset."""
    from agent.blocks.provisioning import PENDING_BOOT_REASON, settle_boot_reason
    from agent.store import Store
    store = Store(tmp_path / "db")
    try:
        store.set_meta(PENDING_BOOT_REASON, "FirmwareUpdate")   # recorded by the install
        settle_boot_reason(store, "ApplicationReset")           # this run's boot accepted
        assert store.get_meta(PENDING_BOOT_REASON) == "FirmwareUpdate"
        settle_boot_reason(store, "FirmwareUpdate")             # the restart's boot
        assert store.get_meta(PENDING_BOOT_REASON) is None
    finally:
        store.close()
