"""The multipart/form-data frame around an uploaded file, for CSMS log endpoints that
take an HTML-form style upload. Only the frame: the file itself is streamed between
`head` and `tail`, so a large log is never held in memory."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

FIELD = "file"


@dataclass(frozen=True)
class Form:
    boundary: str
    head: bytes
    tail: bytes

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @classmethod
    def for_file(cls, filename: str) -> "Form":
        boundary = "station-agent-" + secrets.token_hex(16)
        head = (f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="{FIELD}"; '
                f'filename="{_quoted(filename)}"\r\n'
                "Content-Type: application/octet-stream\r\n"
                "\r\n").encode("utf-8")
        tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        return cls(boundary=boundary, head=head, tail=tail)


def _quoted(name: str) -> str:
    """As browsers do (HTML's form encoding): UTF-8, with the characters that would end
    the quoted string or the header line percent-encoded."""
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
