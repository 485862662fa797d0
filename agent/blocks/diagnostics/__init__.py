"""Diagnostics (OCPP 2.0.1 block N): GetLog and its upload (get_log.py), the archive of a
log for a time window (archive.py), the upload under way as persisted (upload_record.py)."""

from agent.blocks.diagnostics.get_log import Diagnostics

__all__ = ["Diagnostics"]
