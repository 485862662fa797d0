"""Part 6, K Smart Charging: the Charging Station cases of Core (Part 5)."""

from __future__ import annotations

import pytest


def test_TC_K_38(tmp_path):
    """Remote start transaction with charging profile - Ignore chargingProfile."""
    pytest.skip("not applicable: Part 5 runs it only on a station that does NOT support "
                "Smart Charging; this one does (SmartChargingCtrlr, SetChargingProfile, "
                "the chargingProfile of RequestStartTransaction is applied)")
