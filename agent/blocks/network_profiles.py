"""Network connection profiles (B09, B10, A05): where the station connects, and how.

Profiles live in configuration slots (the valuesList of NetworkConfigurationPriority),
persisted in the store. At each boot the station tries the slots in priority order,
moving to the next after NetworkProfileConnectionAttempts failed attempts, round and
round. Two rules keep an operator from locking a station out or weakening it:

- a slot whose security profile is below SecurityCtrlr.SecurityProfile is never used
  (A05: no fall-back to a lower profile once a higher one has run); a successful
  connection on a higher profile raises SecurityProfile for good;
- the last slot that worked stays a candidate even when the priority list leaves it
  out, so a bad new profile costs some attempts, not the station.

SetNetworkProfile validates the profile itself before storing: the slot, OCPP version
and transport, messageTimeout within the bounds of the MessageTimeout variable it
becomes, the URL scheme for the security profile, no downgrade (B09.FR.04). The slot in
use cannot be overwritten: it is the way back. What the station needs to *use* a profile
(a trusted CSMS root for profiles 2 and 3, a station certificate for 3, a password for 1
and 2) is checked when the slot is put into NetworkConfigurationPriority: A05.FR.02/03
and TC_A_20/TC_A_21 want SetNetworkProfile Accepted and that SetVariables Rejected, so a
CSMS can store the profile first and install the certificates before switching. A slot
already in the priority list is checked at SetNetworkProfile, since storing puts it in use.

Once the station has connected on a higher security profile, the slots of lower
profiles leave NetworkConfigurationPriority (A05, TC_A_19 step 13): they could never be
used again, and a CSMS reading the priority must see what the station will really do.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Callable, Protocol
from urllib.parse import urlsplit

from agent.model.device_model import DeviceModel
from agent.model.types import Component, Variable
from agent.ocpp.session import Payload, Reply, Router
from agent.store import Store

log = logging.getLogger(__name__)

PROFILE_KEY = "network.profile.{}"
LAST_WORKING = "network.last_working"
COMM = Component("OCPPCommCtrlr")
SECURITY = Component("SecurityCtrlr")
MESSAGE_TIMEOUT = Variable("MessageTimeout", "Default")
PRIORITY = Variable("NetworkConfigurationPriority")


@dataclass(frozen=True)
class NetworkProfile:
    slot: int
    url: str
    security_profile: int
    message_timeout: int
    data: Payload  # connectionData as the CSMS sent it

    @classmethod
    def from_data(cls, slot: int, data: Payload) -> "NetworkProfile":
        return cls(slot, data["ocppCsmsUrl"], int(data["securityProfile"]),
                   int(data.get("messageTimeout", 30)), data)


def connection_data(url: str, security_profile: int, message_timeout: int = 30) -> Payload:
    """The connectionData of a profile made from the config file's [csms] table."""
    return {"ocppVersion": "OCPP20", "ocppTransport": "JSON", "ocppCsmsUrl": url,
            "messageTimeout": message_timeout, "securityProfile": security_profile,
            "ocppInterface": "Wired0"}


class Trust(Protocol):
    """What the certificate store can vouch for, asked when a profile is set."""

    def has_csms_root(self) -> bool: ...
    def has_station_certificate(self) -> bool: ...


class NetworkProfiles:
    def __init__(self, *, store: Store, model: DeviceModel, router: Router, trust: Trust,
                 security_event: Callable[[str, str | None], None]) -> None:
        self._store = store
        self._model = model
        self._trust = trust
        self._event = security_event
        self._index = 0
        self._failures = 0
        self._candidates = self.candidates()
        # The priority the next start will use (a SetVariables of it is RebootRequired).
        self._next_priority = model.get_list("OCPPCommCtrlr", "NetworkConfigurationPriority")
        model.subscribe(self._on_variable_set)
        router.register("SetNetworkProfile", self._on_set_network_profile)

    def _on_variable_set(self, component: Component, variable: Variable, _attribute: str,
                         value: str) -> None:
        if component == COMM and variable == PRIORITY:
            self._next_priority = [t.strip() for t in value.split(",")]

    # -- storage -------------------------------------------------------------------------

    def load(self, slot: int) -> NetworkProfile | None:
        text = self._store.get_meta(PROFILE_KEY.format(slot))
        if not text:
            return None
        try:
            data = json.loads(text)
            if "url" in data:  # the first layout: {"url", "securityProfile"}
                data = connection_data(data["url"], int(data.get("securityProfile", 1)))
            profile = NetworkProfile.from_data(slot, data)
        except (ValueError, KeyError, TypeError):
            log.error("network profile in slot %d is damaged; ignoring it", slot)
            return None
        # Stored before messageTimeout was checked (0 never connects, 2**31 s waits for
        # ever on a silent network): within the bounds, the profile stays usable.
        lo, hi = self._timeout_bounds()
        if not lo <= profile.message_timeout <= hi:
            log.warning("network profile slot %d: messageTimeout %d s taken as %d s", slot,
                        profile.message_timeout, min(max(profile.message_timeout, lo), hi))
            profile = replace(profile,
                              message_timeout=min(max(profile.message_timeout, lo), hi))
        return profile

    def _timeout_bounds(self) -> tuple[int, int]:
        """What the MessageTimeout variable can hold (a profile's messageTimeout goes
        there once it connects)."""
        chars = self._model.definition(COMM, MESSAGE_TIMEOUT).characteristics
        lo = 1 if chars.min_limit is None else int(chars.min_limit)
        hi = 2 ** 31 - 1 if chars.max_limit is None else int(chars.max_limit)
        return max(lo, 1), hi

    def save(self, slot: int, data: Payload) -> None:
        self._store.set_meta(PROFILE_KEY.format(slot), json.dumps(data, sort_keys=True))

    # -- choosing where to connect ---------------------------------------------------------

    def security_profile(self) -> int:
        return self._model.get_int("SecurityCtrlr", "SecurityProfile")

    def candidates(self) -> list[NetworkProfile]:
        """Slots to try, in order: the priority list, then the last one that worked."""
        floor = self.security_profile()
        slots: list[int] = []
        for text in self._model.get_list("OCPPCommCtrlr", "NetworkConfigurationPriority"):
            if text.isdigit() and int(text) not in slots:
                slots.append(int(text))
        last = self._store.get_meta(LAST_WORKING)
        if last and last.isdigit() and int(last) not in slots:
            slots.append(int(last))
        found = [p for p in (self.load(s) for s in slots) if p is not None]
        usable = [p for p in found if p.security_profile >= floor]
        for p in found:
            if p not in usable:
                log.warning("network profile slot %d uses security profile %d, below the "
                            "station's %d: not used", p.slot, p.security_profile, floor)
        return usable

    def current(self) -> NetworkProfile | None:
        if not self._candidates:
            return None
        return self._candidates[self._index % len(self._candidates)]

    def attempt_failed(self, event: str | None = None) -> None:
        """One failed connection attempt on the current profile."""
        self._failures += 1
        limit = self._model.get_int("OCPPCommCtrlr", "NetworkProfileConnectionAttempts")
        if self._failures >= limit and len(self._candidates) > 1:
            self._failures = 0
            self._index += 1
            nxt = self.current()
            assert nxt is not None
            log.warning("%d attempts failed; trying network profile slot %d (%s)",
                        limit, nxt.slot, nxt.url)

    def connected(self) -> None:
        """The current profile works: remember it, and let it raise the security floor."""
        profile = self.current()
        if profile is None:
            return
        self._failures = 0
        self._store.set_meta(LAST_WORKING, str(profile.slot))
        self._model.set_actual(COMM, Variable("ActiveNetworkProfile"), str(profile.slot))
        self._model.set_actual(COMM, MESSAGE_TIMEOUT, str(profile.message_timeout))
        if profile.security_profile > self.security_profile():
            self._model.set_actual(SECURITY, Variable("SecurityProfile"),
                                   str(profile.security_profile))
            self._event("ReconfigurationOfSecurityParameters",
                        f"SecurityProfile raised to {profile.security_profile} "
                        f"(network profile slot {profile.slot})")
            log.warning("security profile raised to %d; lower profiles are no longer used",
                        profile.security_profile)
        self._drop_lower_slots(profile)

    def _drop_lower_slots(self, active: NetworkProfile) -> None:
        """Take the slots below the station's security profile out of
        NetworkConfigurationPriority (A05: no way back to a lower profile)."""
        floor = self.security_profile()
        priority = [t for t in self._model.get_list("OCPPCommCtrlr",
                                                     "NetworkConfigurationPriority") if t]
        kept = [t for t in priority if not t.isdigit() or (
            (p := self.load(int(t))) is None or p.security_profile >= floor)]
        if not kept:
            kept = [str(active.slot)]
        if kept != priority:
            self._model.set_actual(COMM, PRIORITY, ",".join(kept))
            self._next_priority = kept
            log.warning("NetworkConfigurationPriority %s -> %s: slots below security "
                        "profile %d are no longer used", ",".join(priority), ",".join(kept),
                        floor)

    # -- SetNetworkProfile (B09) -------------------------------------------------------------

    async def _on_set_network_profile(self, request: Payload) -> Payload:
        slot = request["configurationSlot"]
        data = request["connectionData"]
        reason = self._refusal(slot, data)
        if reason is not None:
            code, text = reason
            log.warning("SetNetworkProfile slot %s rejected: %s", slot, text)
            return {"status": "Rejected",
                    "statusInfo": {"reasonCode": code, "additionalInfo": text[:512]}}
        self.save(slot, data)
        self._event("ReconfigurationOfSecurityParameters",
                    f"network profile slot {slot}: security profile {data['securityProfile']}, "
                    f"{urlsplit(data['ocppCsmsUrl']).hostname}")
        log.info("network profile slot %d stored (%s, security profile %d)", slot,
                 data["ocppCsmsUrl"], data["securityProfile"])
        return {"status": "Accepted"}

    def _refusal(self, slot: int, data: Payload) -> tuple[str, str] | None:
        slots = self._model.definition(
            COMM, Variable("NetworkConfigurationPriority")).characteristics.values_list
        if str(slot) not in (slots or ()):
            return "InvalidSlot", f"slot {slot} is not one of {','.join(slots or ())}"  # B09.FR.05
        active = self.current()
        if active is not None and active.slot == slot:
            return "InUse", f"slot {slot} holds the profile in use; set another slot"
        if data["ocppVersion"] != "OCPP20":
            return "UnsupportedVersion", f"{data['ocppVersion']} is not spoken here (OCPP20 is)"
        if data["ocppTransport"] != "JSON":
            return "UnsupportedTransport", "only OCPP-J (JSON) is supported"
        if data.get("vpn") is not None:
            return "VpnNotSupported", "the agent cannot set up a VPN; configure it in the OS"
        lo, hi = self._timeout_bounds()
        if not lo <= data["messageTimeout"] <= hi:
            # 0 never connects; 2**31-1 s would wait for ever on one lost answer.
            return "ValueOutOfRange", (f"messageTimeout {data['messageTimeout']} s is outside "
                                       f"{lo}..{hi} s (OCPPCommCtrlr.MessageTimeout)")
        profile = data["securityProfile"]
        if profile not in (1, 2, 3):
            return "InvalidProfile", f"security profile {profile} does not exist"
        if profile < self.security_profile():
            return "Downgrade", (f"security profile {profile} is below the station's "
                                 f"{self.security_profile()}")  # A05
        refusal = _url_refusal(data["ocppCsmsUrl"], profile)
        in_use = set(self._model.get_list("OCPPCommCtrlr", "NetworkConfigurationPriority"))
        if refusal is None and str(slot) in in_use | set(self._next_priority):
            # The slot is in the priority already: storing the profile puts it into use,
            # so what the priority check would refuse is refused here (A05.FR.02/03).
            refusal = self._credentials_refusal(profile)
        return refusal

    # -- NetworkConfigurationPriority (A05.FR.02/03) -------------------------------------------

    def priority_refusal(self, value: str) -> tuple[str, str] | None:
        """Why the station could not use every slot of a NetworkConfigurationPriority
        value, or None. Empty slots are let through (they are skipped when connecting);
        a value that is no list of slots is left to the device model to refuse."""
        texts = [t.strip() for t in value.split(",")]
        if not all(t.isdigit() for t in texts):
            return None
        for slot in dict.fromkeys(int(t) for t in texts):
            profile = self.load(slot)
            if profile is None:
                continue
            if profile.security_profile < self.security_profile():
                return "InvalidProfile", (
                    f"slot {slot} uses security profile {profile.security_profile}, below "
                    f"the station's {self.security_profile()}")
            reason = self._credentials_refusal(profile.security_profile)
            if reason is not None:
                return reason[0], f"slot {slot}: {reason[1]}"
        return None

    def guard_priority(self, router: Router) -> None:
        """Refuse, within SetVariables, a NetworkConfigurationPriority the station could
        not connect with (A05.FR.02/03). SetVariables belongs to the Variables block,
        which knows nothing of certificates; its handler is wrapped so that only the
        refused items are answered here and every other item goes to it unchanged."""
        route = router.routes["SetVariables"]
        inner = route.handler

        async def handler(request: Payload) -> Payload | Reply:
            items = request["setVariableData"]
            refused = {i: reason for i, item in enumerate(items) if _is_priority(item)
                       and (reason := self.priority_refusal(item["attributeValue"]))}
            if not refused or len(items) > self._items_per_message():
                return await inner(request)   # all of it, or its CALLERROR for too many
            for i, (code, text) in refused.items():
                log.warning("NetworkConfigurationPriority %s rejected: %s",
                            items[i]["attributeValue"], text)
            rest = [item for i, item in enumerate(items) if i not in refused]
            answer = (await inner({**request, "setVariableData": rest}) if rest
                      else {"setVariableResult": []})
            payload = answer.payload if isinstance(answer, Reply) else answer
            results = iter(payload["setVariableResult"])
            merged = [_rejected(items[i], *refused[i]) if i in refused else next(results)
                      for i in range(len(items))]
            payload = {**payload, "setVariableResult": merged}
            return Reply(payload, answer.then) if isinstance(answer, Reply) else payload

        route.handler = handler

    def _items_per_message(self) -> int:
        try:
            return self._model.get_int("DeviceDataCtrlr", "ItemsPerMessage",
                                       instance="SetVariables")
        except KeyError:
            return 2 ** 31 - 1

    def _credentials_refusal(self, profile: int) -> tuple[str, str] | None:
        if profile >= 2 and not self._trust.has_csms_root():
            return "NoCertificate", "no CSMSRootCertificate installed to verify the CSMS with"
        if profile == 3 and not self._trust.has_station_certificate():
            return "NoCertificate", "no valid ChargingStationCertificate for profile 3"
        if profile in (1, 2) and not self._model.get_str("SecurityCtrlr", "BasicAuthPassword"):
            return "NoPassword", "no BasicAuthPassword set for profiles 1 and 2"
        return None


def _is_priority(item: Payload) -> bool:
    return (item["component"]["name"] == COMM.name and "evse" not in item["component"]
            and item["variable"]["name"] == PRIORITY.name and "instance" not in item["variable"]
            and item.get("attributeType", "Actual") == "Actual")


def _rejected(item: Payload, code: str, text: str) -> Payload:
    return {"attributeType": item.get("attributeType", "Actual"), "attributeStatus": "Rejected",
            "component": item["component"], "variable": item["variable"],
            "attributeStatusInfo": {"reasonCode": code, "additionalInfo": text[:512]}}


def _url_refusal(url: str, profile: int) -> tuple[str, str] | None:
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError:
        return "InvalidURL", f"not a URL: {url[:80]}"
    want = "ws" if profile == 1 else "wss"
    if parts.scheme != want or not host:
        return "InvalidURL", f"security profile {profile} needs a {want}:// URL with a host"
    return None
