"""File transfers for firmware updates (download) and GetLog (upload) over http, https
and ftp: one attempt per call, blocking I/O in a worker thread that a cancel stops."""

from agent.transfer.download import download
from agent.transfer.errors import TransferError
from agent.transfer.partfile import Downloaded
from agent.transfer.upload import upload
from agent.transfer.urls import check_url

__all__ = ["Downloaded", "TransferError", "check_url", "download", "upload"]
