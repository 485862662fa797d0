"""Secure firmware update (OCPP 2.0.1 block L): the block (update.py), the persisted job
(job.py) and the signature checks (verify.py)."""

from agent.blocks.firmware.update import FirmwareUpdate

__all__ = ["FirmwareUpdate"]
