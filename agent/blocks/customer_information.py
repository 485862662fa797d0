"""Customer information (block N, use cases N09 "Get Customer Information" and N10 "Clear
Customer Information"): what the station holds about one customer, reported and cleared
on the CSMS's request (privacy law: a driver may ask what is stored and have it erased).

The customer is named by exactly one of idToken, customerCertificate or customerIdentifier
(N09.FR.04 / N10.FR.08); a request with none or several is answered Invalid. report and
clear both false is Rejected (N09.FR.07 / N10.FR.07). Otherwise Accepted (N09.FR.02,
N10.FR.01), and once the answer is on the wire:
- report: what was found, as human-readable lines, in NotifyCustomerInformation pages of
  at most 512 characters (seqNo from 0, tbc true on all but the last) (N09.FR.05); with
  nothing found one message saying so (N09.FR.06, N10.FR.04).
- clear: every record that can go is removed first; with report, the pages say what was
  found and what was cleared (N10.FR.03); without, one message says the data is cleared
  (N10.FR.06).

Where this station keeps customer data, each a `CustomerRecords` (one per kind):
- the Authorization Cache: the entry of the idToken (cleared);
- the agent's own log file (GetLog's DiagnosticsLog): lines naming the idToken; clearing
  masks the token in place with '*' of the same length (the file is written by an
  appending handler, so nothing is moved and nothing is lost);
- open transactions authorized by the idToken, and TransactionEvents for it not yet
  delivered to the CSMS: reported, never cleared. They are the billing record on its way
  to the CSMS, which already holds the rest; the CSMS clears its own copy.
- the Local Authorization List: the entry of the idToken, reported and never cleared.
  Part 6's N10 cases (TC_N_30/31/32/62) verify that the station "removes all customer
  related data (except from LocalList)": the list is the CSMS's (D01, SendLocalList), and
  the station never changes an entry of its own; the CSMS removes the card from it with a
  Differential update. Reported while the list is disabled too: the entry is still stored.
The station keeps no customer (contract) certificates, as it has no ISO 15118, and no data
keyed by a customerIdentifier: a request by either finds nothing, and says so.

The notifications are sent directly, not through the persisted outbox: a report of
personal data must not be written back to the database, least of all by a request to
erase it. One lost with the link is lost; the CSMS can ask again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from agent.clock import Clock, format_datetime
from agent.ocpp.session import Payload, Reply, Router

log = logging.getLogger(__name__)

ACTION = "CustomerInformation"
NOTIFY = "NotifyCustomerInformation"
DATA_MAX = 512          # NotifyCustomerInformationRequest.data maxLength
NO_DATA = "No data found for this customer."
CLEARED = "The data of this customer is cleared."


@dataclass(frozen=True)
class Customer:
    """The customer a request refers to: exactly one of the three is set."""

    id_token: dict[str, Any] | None = None
    certificate: dict[str, Any] | None = None
    identifier: str | None = None

    def kind(self) -> str:
        """How the customer is named, for the agent's log: never the name itself (a
        request to erase a token must not write it into the log again)."""
        if self.id_token is not None:
            return f"an idToken of type {self.id_token['type']}"
        return "a customerCertificate" if self.certificate is not None \
            else "a customerIdentifier"


@dataclass
class Findings:
    """What one kind of record holds about the customer, and what clearing did."""

    found: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)   # found, must stay, with the reason


class CustomerRecords(Protocol):
    """One place the station keeps customer data."""

    def find(self, customer: Customer) -> list[str]:
        """Human-readable lines, one per record about the customer."""
        ...

    def clear(self, customer: Customer) -> Findings:
        """Remove what may be removed; say what was found, cleared and kept."""
        ...


class Link(Protocol):
    async def call(self, action: str, payload: Payload, *, before_accepted: bool = False,
                   wait: bool = True, timeout: float | None = None) -> Payload: ...


class CustomerInformation:
    def __init__(self, router: Router, link: Link, clock: Clock,
                 records: Sequence[CustomerRecords],
                 send_timeout: Callable[[], float] = lambda: 30.0) -> None:
        self._link = link
        self._clock = clock
        self._records = tuple(records)
        self._send_timeout = send_timeout
        self._tasks: set[asyncio.Task[None]] = set()
        router.register(ACTION, self._on_customer_information)

    async def _on_customer_information(self, request: Payload) -> Payload | Reply:
        given = [k for k in ("idToken", "customerCertificate", "customerIdentifier")
                 if request.get(k) is not None]
        if len(given) != 1:
            return {"status": "Invalid", "statusInfo": {
                "reasonCode": "InvalidValue" if given else "MissingParam",
                "additionalInfo": "exactly one of idToken, customerCertificate and "
                                  "customerIdentifier names the customer"}}
        report, clear = request["report"], request["clear"]
        if not report and not clear:
            return {"status": "Rejected", "statusInfo": {
                "reasonCode": "InvalidValue",
                "additionalInfo": "report and clear are both false: nothing to do"}}
        customer = Customer(request.get("idToken"), request.get("customerCertificate"),
                            request.get("customerIdentifier"))
        request_id = request["requestId"]

        async def then() -> None:
            lines = self.clear(customer, report) if clear else self.report(customer)
            task = asyncio.ensure_future(self._send(request_id, lines))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return Reply({"status": "Accepted"}, then)

    # -- the work, without I/O ----------------------------------------------------------

    def report(self, customer: Customer) -> list[str]:
        """What the station holds about the customer, one line per record."""
        lines = [line for records in self._records for line in records.find(customer)]
        log.info("CustomerInformation for %s: %d record(s)", customer.kind(), len(lines))
        return lines or [NO_DATA]

    def clear(self, customer: Customer, report: bool) -> list[str]:
        """Clear what may go; the lines to report (N10.FR.03/04) or the one message that
        the data is cleared (N10.FR.06)."""
        findings = [records.clear(customer) for records in self._records]
        cleared = sum(len(f.cleared) for f in findings)
        kept = [line for f in findings for line in f.kept]
        log.info("CustomerInformation clear for %s: %d record(s) cleared, %d kept",
                 customer.kind(), cleared, len(kept))
        if not report:
            return [CLEARED] + [f"Kept: {line}" for line in kept]
        lines = [f"Cleared: {line}" for f in findings for line in f.cleared]
        lines += [f"Kept: {line}" for line in kept]
        return lines or [NO_DATA]

    # -- sending ------------------------------------------------------------------------

    async def _send(self, request_id: int, lines: list[str]) -> None:
        pages = paginate(lines)
        generated = format_datetime(self._clock.now())
        for seq_no, page in enumerate(pages):
            payload: Payload = {"data": page, "seqNo": seq_no, "generatedAt": generated,
                                "requestId": request_id}
            if seq_no < len(pages) - 1:
                payload["tbc"] = True
            try:
                await self._link.call(NOTIFY, payload, wait=False,
                                      timeout=self._send_timeout())
            except Exception as exc:  # noqa: BLE001 - the CSMS may ask again
                log.warning("NotifyCustomerInformation %d/%d of request %d not delivered: "
                            "%s", seq_no + 1, len(pages), request_id, exc)
                return


def paginate(lines: list[str], limit: int = DATA_MAX) -> list[str]:
    """Lines joined by newlines into pages of at most `limit` characters; a line longer
    than a page is split over several."""
    pages: list[str] = []
    current = ""
    for line in lines:
        while len(line) > limit:
            if current:
                pages.append(current)
                current = ""
            pages.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            pages.append(current)
            current = line
        else:
            current = candidate
    if current or not pages:
        pages.append(current)
    return pages


# -- where the station keeps customer data ------------------------------------------------

def same_token(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """IdTokenType equality: idToken is a CiString (case-insensitive), type exact."""
    return (a is not None and b is not None and a.get("type") == b.get("type")
            and str(a.get("idToken", "")).casefold() == str(b.get("idToken", "")).casefold())


class CacheEntries(Protocol):
    def entries(self) -> list[Any]: ...   # AuthCache.entries(): CacheEntry with .id_token


class AuthCacheRecords:
    """The Authorization Cache entry of the idToken. Read through AuthCache's public
    entries() (which sees entries also while the cache is disabled: they are still
    stored); removed through `forget`, the one row of the cache's table."""

    def __init__(self, cache: CacheEntries, forget: Callable[[dict[str, Any]], None]) -> None:
        self._cache = cache
        self._forget = forget

    def _entries(self, customer: Customer) -> list[Any]:
        return [e for e in self._cache.entries() if same_token(e.id_token, customer.id_token)]

    def find(self, customer: Customer) -> list[str]:
        lines = []
        for entry in self._entries(customer):
            info = entry.info
            expiry = info.get("cacheExpiryDateTime")
            lines.append(
                f"Authorization cache: {entry.id_token['idToken']} ({entry.id_token['type']}) "
                f"status {info.get('status')}, last used {format_datetime(entry.last_used)}"
                + (f", valid until {expiry}" if expiry else "")
                + (f", group {info['groupIdToken']['idToken']}"
                   if isinstance(info.get("groupIdToken"), dict) else ""))
        return lines

    def clear(self, customer: Customer) -> Findings:
        found = self.find(customer)
        for entry in self._entries(customer):
            self._forget(entry.id_token)
        return Findings(found=found, cleared=found)


class LogFileRecords:
    """Lines of the agent's log file (agent.logfile) that name the idToken. Clearing
    overwrites each occurrence in place with '*' of the same length: the logging handler
    appends to the same file meanwhile, so the file is neither moved nor resized."""

    MASK = ord("*")

    def __init__(self, files: Callable[[], list[Any]]) -> None:
        self._files = files    # agent.logfile.log_files(directory), bound

    def _pattern(self, customer: Customer) -> Any:
        import re
        if customer.id_token is None or not customer.id_token.get("idToken"):
            return None
        token = re.escape(str(customer.id_token["idToken"]).encode("utf-8"))
        # Not inside a longer word: 04A1B2 must not mask part of 04A1B2C3.
        return re.compile(rb"(?<![0-9A-Za-z])" + token + rb"(?![0-9A-Za-z])", re.IGNORECASE)

    def _count(self, pattern: Any) -> tuple[int, int]:
        lines = files = 0
        for path in self._files():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            hits = sum(1 for line in data.splitlines() if pattern.search(line))
            lines += hits
            files += hits > 0
        return lines, files

    def find(self, customer: Customer) -> list[str]:
        pattern = self._pattern(customer)
        if pattern is None:
            return []
        lines, files = self._count(pattern)
        return [f"Station log: {lines} line(s) in {files} file(s) name "
                f"{customer.id_token['idToken']}"] if lines else []   # type: ignore[index]

    def clear(self, customer: Customer) -> Findings:
        pattern = self._pattern(customer)
        found = self.find(customer)
        if pattern is None or not found:
            return Findings(found=found)
        import os
        for path in self._files():
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                continue
            try:
                data = os.pread(fd, os.fstat(fd).st_size, 0)
                for match in pattern.finditer(data):
                    os.pwrite(fd, bytes([self.MASK]) * (match.end() - match.start()),
                              match.start())
                os.fsync(fd)
            finally:
                os.close(fd)
        return Findings(found=found, cleared=found)


class TransactionRecords:
    """Open transactions authorized by the idToken and its TransactionEvents not yet
    delivered: reported, never cleared (they are the billing record on its way to the
    CSMS, see the module docstring)."""

    def __init__(self, open_transactions: Callable[[], list[Any]],
                 queued: Callable[[str], list[dict[str, Any]]]) -> None:
        self._open = open_transactions     # Transaction objects (agent.blocks.transaction_state)
        self._queued = queued              # outbox payloads whose text contains a string

    def find(self, customer: Customer) -> list[str]:
        if customer.id_token is None:
            return []
        lines = [f"Transaction {tx.id} on EVSE {tx.evse_id}, ongoing, authorized by "
                 f"{tx.id_token['idToken']} ({tx.id_token['type']})"
                 for tx in self._open() if same_token(tx.id_token, customer.id_token)]
        events = [p for p in self._queued(str(customer.id_token["idToken"]))
                  if same_token(p.get("idToken"), customer.id_token)]
        by_tx: dict[str, int] = {}
        for event in events:
            tx_id = event.get("transactionInfo", {}).get("transactionId", "?")
            by_tx[tx_id] = by_tx.get(tx_id, 0) + 1
        lines += [f"Transaction {tx_id}: {n} TransactionEvent(s) with this idToken not yet "
                  "delivered to the CSMS" for tx_id, n in sorted(by_tx.items())]
        return lines

    def clear(self, customer: Customer) -> Findings:
        found = self.find(customer)
        return Findings(found=found, kept=[f"{line} (billing data, kept)" for line in found])


class LocalListRecords:
    """The Local Authorization List entry of the idToken: reported, kept (see the module
    docstring)."""

    def __init__(self, entry: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
        self._entry = entry    # idTokenInfo stored for an IdToken, or None

    def find(self, customer: Customer) -> list[str]:
        token = customer.id_token
        if token is None or not isinstance(token.get("idToken"), str) \
                or not isinstance(token.get("type"), str):
            return []
        info = self._entry(token)
        if info is None:
            return []
        expiry = info.get("cacheExpiryDateTime")
        group = info.get("groupIdToken")
        return [f"Local Authorization List: {token['idToken']} ({token['type']}) "
                f"status {info.get('status')}"
                + (f", valid until {expiry}" if expiry else "")
                + (f", group {group['idToken']}" if isinstance(group, dict) else "")]

    def clear(self, customer: Customer) -> Findings:
        found = self.find(customer)
        return Findings(found=found, kept=[
            f"{line} (the CSMS's list: only the CSMS changes it, with SendLocalList)"
            for line in found])


def local_list_entry(store: Any) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """The idTokenInfo the Local Authorization List stores for an IdToken (the
    local_auth_list table of agent/blocks/local_auth_list.py, its primary key: idToken
    without case, type exact), whether or not the list is enabled; read-only."""
    import json

    def entry(id_token: dict[str, Any]) -> dict[str, Any] | None:
        rows = store.query("SELECT info FROM local_auth_list WHERE id_token = ? AND type = ?",
                           (id_token["idToken"], id_token["type"]))
        return json.loads(rows[0][0]) if rows else None
    return entry


def queued_transaction_events(store: Any) -> Callable[[str], list[dict[str, Any]]]:
    """Outbox TransactionEvents whose JSON contains `text` (LIKE: ASCII case-insensitive;
    the caller checks the idToken exactly), read-only from the store."""
    import json

    def query(text: str) -> list[dict[str, Any]]:
        # As the outbox stored it: JSON text, non-ASCII as \\u escapes.
        needle = json.dumps(text)[1:-1]
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = store.query("SELECT payload FROM outbox WHERE action = 'TransactionEvent' "
                           "AND payload LIKE ? ESCAPE '\\'", (f"%{escaped}%",))
        return [json.loads(payload) for (payload,) in rows]
    return query


def forget_cached(store: Any, cache: Any, model: Any) -> Callable[[dict[str, Any]], None]:
    """Remove one Authorization Cache entry (the auth_cache table's primary key, idToken
    compared without case as the table's collation does), and bring
    AuthCacheCtrlr.Storage's Actual (bytes in use) up to date as AuthCache does after its
    own changes: through its public used_bytes() and the device model."""
    from agent.model.types import Component, Variable
    component, variable = Component("AuthCacheCtrlr"), Variable("Storage")

    def forget(id_token: dict[str, Any]) -> None:
        store.execute("DELETE FROM auth_cache WHERE id_token = ? AND type = ?",
                      (id_token["idToken"], id_token["type"]))
        try:
            limit = model.definition(component, variable).characteristics.max_limit
        except KeyError:
            return
        used = cache.used_bytes()
        model.set_actual(component, variable,
                         str(min(used, int(limit)) if limit is not None else used))
    return forget
