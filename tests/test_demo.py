"""`station-agent demo` shows the exchange and stops by itself."""

import subprocess
import sys


def test_demo_shows_boot_and_a_charging_session_then_stops():
    result = subprocess.run([sys.executable, "-m", "agent", "demo"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for needed in ('"BootNotification"', '"StatusNotification"', '"Heartbeat"',
                   '"GetVariables"', '"NotifyReport"', '"Authorize"', "TransactionEvent Started #0",
                   "trigger MeterValuePeriodic", "TransactionEvent Ended", "stopped EVDisconnected",
                   "agent stopped (exit 0)"):
        assert needed in out
    assert "schema problems" not in out
