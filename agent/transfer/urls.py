"""Which URLs a transfer accepts, parsed once into what the protocol code needs.

Checked before any I/O so that a CSMS sending "sftp://..." or a URL without a host gets
its answer (and the operator a clear line) without a socket being opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from agent.transfer.errors import INVALID_URL, NOT_SUPPORTED, TransferError, shown

SCHEMES = {"http": 80, "https": 443, "ftp": 21}
# Characters left alone when a request target is percent-encoded: everything RFC 3986
# allows in a path or query, and "%" so that an already-encoded URL stays as it is.
_SAFE = "/:@!$&'()*+,;=-._~%?"


@dataclass(frozen=True)
class Target:
    url: str                    # as given, with credentials: never log it, use `shown`
    shown: str                  # safe for errors and logs
    scheme: str                 # "http", "https" or "ftp"
    host: str                   # without brackets for IPv6
    port: int
    username: str | None        # percent-decoded
    password: str | None        # percent-decoded
    path: str                   # raw path as in the URL, "" when none
    query: str

    @property
    def request_target(self) -> str:
        """The HTTP request line's target: path and query, non-ASCII percent-encoded."""
        target = (self.path or "/") + (f"?{self.query}" if self.query else "")
        return quote(target, safe=_SAFE)

    @property
    def ftp_path(self) -> str:
        """The FTP path: RFC 1738 makes it relative to the login directory, so one leading
        "/" goes ("ftp://host//etc/x" names the absolute /etc/x)."""
        path = unquote(self.path)
        return path[1:] if path.startswith("/") else path

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host.lower(), self.port


def parse(url: str, *, for_upload: bool = False) -> Target:
    """The URL as a Target, or TransferError(InvalidURL / NotSupported)."""
    if not isinstance(url, str) or not url.strip():
        raise TransferError(INVALID_URL, "invalid URL: empty")
    safe = shown(url)
    if any(c.isspace() or not c.isprintable() for c in url):
        raise TransferError(INVALID_URL, f"invalid URL {safe}: contains spaces or control "
                                         "characters (percent-encode them)")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise TransferError(INVALID_URL, f"invalid URL {safe}: {_why(exc)}") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise TransferError(INVALID_URL, f"invalid URL {safe}: no scheme "
                                         "(expected http://, https:// or ftp://)")
    if scheme not in SCHEMES:
        raise TransferError(NOT_SUPPORTED, f"URL {safe}: scheme {scheme!r} is not supported "
                                           "(use http, https or ftp)")
    if not host:
        raise TransferError(INVALID_URL, f"invalid URL {safe}: no host name")
    if not host.isascii():
        try:   # http.client and ftplib send the host name as ASCII
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise TransferError(INVALID_URL, f"invalid URL {safe}: the host name is not "
                                             "a valid international domain name") from None
    if port == 0:
        raise TransferError(INVALID_URL, f"invalid URL {safe}: port 0")
    if scheme == "ftp" and not for_upload:
        name = unquote(parts.path)
        if not name.strip("/") or name.endswith("/"):
            raise TransferError(INVALID_URL, f"invalid URL {safe}: names a directory, "
                                             "not a file to download")
    return Target(
        url=url, shown=safe, scheme=scheme, host=host, port=port or SCHEMES[scheme],
        username=None if parts.username is None else unquote(parts.username),
        password=None if parts.password is None else unquote(parts.password),
        path=parts.path, query=parts.query)


def check_url(url: str, *, for_upload: bool = False) -> None:
    """Raise TransferError(InvalidURL / NotSupported) for a URL no transfer could use;
    does no I/O (no name lookup either)."""
    parse(url, for_upload=for_upload)


def _why(exc: ValueError) -> str:
    text = str(exc)
    if "port" in text.lower():
        return "the port is not a number from 1 to 65535"
    if "ipv6" in text.lower() or "bracket" in text.lower():
        return "malformed IPv6 address"
    return "malformed"
