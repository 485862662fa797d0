"""Hypothesis strategies for OCPP 2.0.1 payloads, built from the official JSON schemas.

The schemas are the ones the PyPI `ocpp` package ships (`ocpp/v201/schemas/*.json`), the
same the test CSMS checks the station with; nothing here restates a message by hand. They
use a small part of JSON Schema (type, properties, required, additionalProperties, $ref
to #/definitions, enum, maxLength, minItems/maxItems, minimum/maximum, format date-time),
and each keyword maps to a strategy that leans on the edges where handlers break:

- integers: 0, +-1, the 32-bit and 64-bit limits and one past them, 10**30, negatives;
- numbers: the same plus 0.1, -0.0, the largest and smallest doubles;
- strings: empty, exactly maxLength (ASCII and multi-byte), unicode (NUL, right-to-left,
  astral), whitespace;
- date-times: the instants at the edge of the RFC 3339 range with far offsets
  (0001-01-01T00:00:00+14:00 lies before year 1 in UTC, 9999-12-31T23:59:59.999-12:00
  after year 9999), a leap second (23:59:60, which RFC 3339 and the schema allow),
  nanoseconds, lower-case "t"/"z", and times near `now` so that schedules become active;
- arrays: exactly minItems and maxItems, and long ones (one element repeated) where the
  schema sets no maximum;
- enums: every value; optional properties present or absent; customData with extras.

`errors(action, kind, payload)` checks a payload with jsonschema against the same schema
(date-time formats really checked, leap seconds allowed as RFC 3339 allows them), so a
test knows every payload it sends is schema-valid and any CALLERROR is the station's
choice. `broken_payloads(action, now)` breaks a valid payload at exactly one point (a
required property dropped, an unknown one added, a wrong type, a string too long, a value
outside its enum or range, an item count outside the bounds) and says which OCPP-J error
code (Part 4, 4.3) that breakage calls for.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import jsonschema
import jsonschema.validators
import ocpp
from hypothesis import strategies as st

from agent.demo.csms.oracle import STATION_ACTIONS, is_rfc3339_date_time

SCHEMA_DIR = Path(ocpp.__file__).parent / "v201" / "schemas"

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1
# Integers where code breaks: the 32-bit and 64-bit edges (SQLite's INTEGER is 64-bit,
# C long too), one past each, and far beyond.
INT_EDGES = (0, 1, -1, 2, INT32_MAX, INT32_MAX + 1, INT32_MIN, INT32_MIN - 1, 2 ** 32,
             2 ** 53 + 1, 2 ** 63 - 1, 2 ** 63, -(2 ** 63), -(2 ** 63) - 1, 2 ** 64,
             10 ** 30, -(10 ** 30))
FLOAT_EDGES = (0.0, -0.0, 0.1, -0.1, 0.5, 1.5, 1e-300, 5e-324, 1.7976931348623157e308,
               -1.7976931348623157e308, 1e15, 123456.789012)

# Date-times at the edges of what RFC 3339 can write: in UTC the first is in year 0 and
# the second in year 10000, outside what Python's datetime holds.
DATE_TIME_EDGES = (
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999-12:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-23:59",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999999+23:59",
    "1970-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999-00:00",
    "2038-01-19T03:14:08Z",           # one past the 32-bit time_t
    "2000-02-29T12:00:00+05:30",
    "2016-12-31T23:59:60Z",           # a leap second: RFC 3339 allows :60
    "2020-06-30t23:59:59.5z",         # lower case, as RFC 3339 section 5.6 NOTE allows
)

# Strings that have broken parsers elsewhere: NUL, controls, bidi, astral, combining,
# a lone "%" (URL decoding), quotes and backslashes (JSON/SQL), whitespace only.
ODD_TEXT = ("\x00", "\t\n\r", "\u202e\u202d", "\U0001f50c\U0001f697", "e\u0301", "%", "%00",
            "'\";--", "\\", " ", "\ufeff", "\u2028", "NaN", "-1", "1e999", "null")


@functools.lru_cache(maxsize=None)
def schema(action: str, kind: str) -> dict[str, Any]:
    """The official schema of `action`'s "Request" or "Response"."""
    path = SCHEMA_DIR / f"{action}{kind}.json"
    return json.loads(path.read_text(encoding="utf-8-sig"))


def csms_actions() -> list[str]:
    """Every action whose request a CSMS may send: each request schema of the ocpp
    package but those only a Charging Station sends (the test CSMS's own list)."""
    names = sorted(p.name[:-len("Request.json")] for p in SCHEMA_DIR.glob("*Request.json"))
    return [a for a in names if a not in STATION_ACTIONS or a == "DataTransfer"]


_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checks("date-time")(is_rfc3339_date_time)


@functools.lru_cache(maxsize=None)
def _validator(action: str, kind: str) -> Any:
    doc = schema(action, kind)
    cls = jsonschema.validators.validator_for(doc, default=jsonschema.Draft6Validator)
    return cls(doc, format_checker=_FORMATS)


def errors(action: str, kind: str, payload: Any) -> list[str]:
    """Why `payload` is not a valid `kind` ("Request"/"Response") of `action` (empty: it is)."""
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"[:300]
            for e in _validator(action, kind).iter_errors(payload)]


# --- scalar strategies ------------------------------------------------------------------

def integers(minimum: float | None = None, maximum: float | None = None, *,
             wide: bool = True) -> st.SearchStrategy[int]:
    """Small values most of the time (so handlers get past "unknown EVSE"), the edges
    often; `wide=False` keeps to 32-bit values."""
    lo = None if minimum is None else int(minimum)
    hi = None if maximum is None else int(maximum)
    if not wide:
        lo = INT32_MIN if lo is None else max(lo, INT32_MIN)
        hi = INT32_MAX if hi is None else min(hi, INT32_MAX)

    def fits(v: int) -> bool:
        return (lo is None or v >= lo) and (hi is None or v <= hi)

    edges = [v for v in INT_EDGES if fits(v)]
    small_lo = -3 if lo is None else max(lo, -3) if lo <= 3 else lo
    small_hi = max(small_lo, 5 if hi is None else min(hi, 5))
    parts = [st.integers(small_lo, small_hi), st.integers(lo, hi)]
    if edges:
        parts.insert(1, st.sampled_from(edges))
    return st.one_of(parts)


def numbers(minimum: float | None = None, maximum: float | None = None, *,
            wide: bool = True) -> st.SearchStrategy[float | int]:
    """JSON numbers: the integers above, the float edges, any finite float."""
    def fits(v: float) -> bool:
        return (minimum is None or v >= minimum) and (maximum is None or v <= maximum)

    edges = [v for v in FLOAT_EDGES if fits(v)]
    parts: list[st.SearchStrategy[Any]] = [integers(minimum, maximum, wide=wide)]
    if edges:
        parts.append(st.sampled_from(edges))
    parts.append(st.floats(min_value=minimum, max_value=maximum, allow_nan=False,
                           allow_infinity=False))
    return st.one_of(parts)


def strings(max_length: int | None) -> st.SearchStrategy[str]:
    """Empty, at the maximum (ASCII and multi-byte), short unicode, and odd bits."""
    cap = 2000 if max_length is None else max_length
    parts: list[st.SearchStrategy[str]] = [
        st.text(st.characters(codec="utf-8"), max_size=min(cap, 24)),
        st.just(""),
        st.just("A" * cap),
        st.sampled_from([c * (cap // len(c)) for c in ("\u20ac", "\U0001f50c", "e\u0301")]),
        st.sampled_from([t for t in ODD_TEXT if len(t) <= cap]),
        st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True).filter(lambda s: len(s) <= cap),
    ]
    return st.one_of(parts)


def _format_offset(minutes: int) -> str:
    if minutes == 0:
        return "Z"
    sign = "+" if minutes > 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def date_times(now: Callable[[], datetime]) -> st.SearchStrategy[str]:
    """RFC 3339 date-times: the edges above, instants near `now()` (read when drawn, so
    a clock the test moves is followed) and anywhere in years 1..9999."""
    offsets = st.sampled_from([0, 0, 60, -60, 330, 840, -720, 23 * 60 + 59, -(23 * 60 + 59)])
    fractions = st.sampled_from(["", "", ".000", ".5", ".123456", ".123456789"])

    def render(moment: datetime, offset: int, fraction: str) -> str:
        local = moment.astimezone(timezone(timedelta(minutes=offset)))
        return local.replace(tzinfo=None).isoformat(timespec="seconds") + fraction + \
            _format_offset(offset)

    @st.composite
    def near_now(draw: st.DrawFn) -> str:
        delta = draw(st.sampled_from([0, 1, -1, 59, 3600, -3600, 86400, -86400, 7 * 86400])
                     | st.integers(-10 ** 6, 10 ** 6))
        moment = now().astimezone(timezone.utc) + timedelta(seconds=delta)
        return render(moment, draw(offsets), draw(fractions))

    # Leave room for the offset: a UTC instant within a day of the ends renders fine.
    anywhere = st.builds(render, st.datetimes(min_value=datetime(1, 1, 2),
                                              max_value=datetime(9999, 12, 30),
                                              timezones=st.just(timezone.utc)),
                         offsets, fractions)
    return st.one_of(st.sampled_from(DATE_TIME_EDGES), near_now(), anywhere)


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value, a few levels deep."""
    leaves = st.none() | st.booleans() | integers() | numbers() | strings(40)
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(strings(20), inner, max_size=4), max_leaves=12)


# --- from a schema ------------------------------------------------------------------------

Override = Callable[[], st.SearchStrategy[Any]]


class PayloadStrategies:
    """Strategies for the payloads of one schema document.

    `fields`: property name -> strategy factory used wherever a property of that name
    appears (e.g. URLs pointed at a closed port on loopback), or "Type.name" for the
    property of one definition only (e.g. "EVSEType.id"). `wide`: integers beyond 32
    bits too, which the schemas allow and OCPP does not (Part 2: integer is 32-bit).
    """

    def __init__(self, doc: dict[str, Any], now: Callable[[], datetime],
                 fields: Mapping[str, Override] | None = None, wide: bool = True,
                 long_arrays: int = 60, array_bytes: int = 40_000) -> None:
        self.doc = doc
        self.now = now
        self.fields = dict(fields or {})
        self.wide = wide
        self.long_arrays = long_arrays
        self.array_bytes = array_bytes

    def root(self) -> st.SearchStrategy[dict[str, Any]]:
        return self.node(self.doc)

    def _resolve(self, node: dict[str, Any]) -> tuple[dict[str, Any], str]:
        ref = node.get("$ref")
        if ref is None:
            return node, ""
        assert ref.startswith("#/definitions/"), ref
        name = ref.split("/")[-1]
        return self.doc["definitions"][name], name

    def node(self, node: dict[str, Any], within: int = 0) -> st.SearchStrategy[Any]:
        """`within`: how many arrays that may grow long enclose this node (long arrays
        inside long arrays would make payloads of megabytes)."""
        node, type_name = self._resolve(node)
        if "enum" in node:
            return st.sampled_from(node["enum"])
        kind = node.get("type")
        if kind == "object":
            return self.object(node, within, type_name)
        if kind == "array":
            return self.array(node, within)
        if kind == "string":
            if node.get("format") == "date-time":
                return date_times(self.now)
            return strings(node.get("maxLength"))
        if kind == "integer":
            return integers(node.get("minimum"), node.get("maximum"), wide=self.wide)
        if kind == "number":
            return numbers(node.get("minimum"), node.get("maximum"), wide=self.wide)
        if kind == "boolean":
            return st.booleans()
        if kind is None:   # DataTransfer data: any JSON value
            return json_values()
        raise ValueError(f"schema keyword set not handled: {node}")

    def object(self, node: dict[str, Any], within: int,
               type_name: str = "") -> st.SearchStrategy[dict[str, Any]]:
        props: dict[str, Any] = node.get("properties", {})
        required = set(node.get("required", ()))

        def strategy(name: str, prop: dict[str, Any]) -> st.SearchStrategy[Any]:
            override = self.fields.get(f"{type_name}.{name}") or self.fields.get(name)
            return override() if override is not None else self.node(prop, within)
        strategies = {name: strategy(name, p) for name, p in props.items()}
        extra = node.get("additionalProperties", True) is not False

        @st.composite
        def build(draw: st.DrawFn) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name, strategy in strategies.items():
                # customData is noise to every handler: present now and then.
                odds = 7 if name == "customData" else 1
                if name in required or draw(st.integers(0, odds)) == 0:
                    out[name] = draw(strategy)
            if extra and draw(st.integers(0, 7)) == 0:
                # CustomDataType allows any further property (vendor extensions).
                out[draw(st.sampled_from(["x", "vendorExtra", "\u00e9"]))] = draw(
                    st.one_of(st.integers(), st.text(max_size=5), st.none(),
                              st.lists(st.integers(), max_size=3)))
            return out
        return build()

    def array(self, node: dict[str, Any], within: int) -> st.SearchStrategy[list[Any]]:
        lo = node.get("minItems", 0)
        hi = node.get("maxItems")
        top = lo + 3 if hi is None else min(hi, lo + 3)
        may_grow = hi is None or hi > top
        item = self.node(node["items"], within + may_grow)
        parts = [st.lists(item, min_size=lo, max_size=top)]
        if may_grow and within == 0:
            # Long arrays cost little to draw: one element many times (JSON has no
            # aliasing); the schema's maxItems exactly, or long where it sets none.
            sizes = [hi] if hi is not None else [max(lo, self.long_arrays),
                                                 max(lo, 2 * self.long_arrays)]
            parts.append(st.builds(self._repeat, item, st.sampled_from(sizes)))
        return st.one_of(parts)

    def _repeat(self, item: Any, n: int) -> list[Any]:
        # Keep a payload within a size a station accepts (an item of kilobytes times the
        # 1024 salesTariffEntry maxItems would be megabytes): oversize frames are a
        # separate test.
        size = len(json.dumps(item, ensure_ascii=False).encode())
        return [item] * max(1, min(n, self.array_bytes // size))


def payloads(action: str, now: Callable[[], datetime], *,
             fields: Mapping[str, Override] | None = None,
             wide: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """Schema-valid request payloads of `action` (see PayloadStrategies)."""
    return PayloadStrategies(schema(action, "Request"), now, fields, wide).root()


# --- schema-invalid payloads ----------------------------------------------------------------

# The OCPP-J error code (Part 4, 4.3) for each way a payload can break its schema.
FORMAT = "FormatViolation"              # a property the schema does not allow
TYPE = "TypeConstraintViolation"        # a value of the wrong JSON type
OCCURRENCE = "OccurrenceConstraintViolation"   # a required property missing; item counts
PROPERTY = "PropertyConstraintViolation"       # too long, not in the enum, out of range


def _breakages(doc: dict[str, Any], node: dict[str, Any], value: Any, path: tuple[Any, ...]
               ) -> Iterator[tuple[tuple[Any, ...], str, Any, str]]:
    """(path, what, replacement, expected code) for every single-point breakage of
    `value`; a replacement of _DROP removes the property."""
    ref = node.get("$ref")
    if ref:
        node = doc["definitions"][ref.split("/")[-1]]
    if "enum" in node:
        yield path, "an enum given a number", 1, TYPE
        yield path, "a value outside the enum", "NotAnEnumValue", PROPERTY
        return
    kind = node.get("type")
    if kind == "object" and isinstance(value, dict):
        if path:
            yield path, "an object given a string", "x", TYPE
        if node.get("additionalProperties", True) is False:
            yield path + ("zzUnknown",), "an unknown property", 1, FORMAT
        props = node.get("properties", {})
        for name in node.get("required", ()):
            yield path + (name,), f"required {name} missing", _DROP, OCCURRENCE
        for name, item in value.items():
            if name in props:
                yield from _breakages(doc, props[name], item, path + (name,))
    elif kind == "array" and isinstance(value, list):
        yield path, "an array given an object", {}, TYPE
        lo, hi = node.get("minItems", 0), node.get("maxItems")
        if lo > 0:
            yield path, f"fewer than {lo} items", value[:lo - 1], OCCURRENCE
        if hi is not None and value:
            yield path, f"more than {hi} items", value + [value[0]] * (hi + 1 - len(value)), \
                OCCURRENCE
        for i, item in enumerate(value[:3]):
            yield from _breakages(doc, node.get("items", {}), item, path + (i,))
    elif kind == "string":
        yield path, "a string given a number", 5, TYPE
        if node.get("maxLength") is not None:
            yield path, "a string over maxLength", "a" * (node["maxLength"] + 1), PROPERTY
        if node.get("format") == "date-time":
            yield path, "a date-time that is not one", "2024-02-30T00:00:00Z", PROPERTY
            yield path, "a date-time without a zone", "2024-02-01T00:00:00", PROPERTY
    elif kind == "integer":
        yield path, "an integer given a string", "1", TYPE
        yield path, "an integer given a fraction", 1.5, TYPE
        yield path, "an integer given a boolean", True, TYPE
        yield path, BEYOND_32_BITS, 2 ** 63, TYPE
        if node.get("minimum") is not None:
            yield path, "below the minimum", int(node["minimum"]) - 1, PROPERTY
        if node.get("maximum") is not None:
            yield path, "above the maximum", int(node["maximum"]) + 1, PROPERTY
    elif kind == "number":
        yield path, "a number given a string", "1.5", TYPE
        yield path, "a number given a boolean", False, TYPE
    elif kind == "boolean":
        yield path, "a boolean given a string", "true", TYPE
        yield path, "a boolean given a number", 1, TYPE


_DROP = object()
BEYOND_32_BITS = "an integer beyond 32 bits"


def _apply(payload: Any, path: tuple[Any, ...], replacement: Any) -> Any:
    payload = json.loads(json.dumps(payload))   # no shared parts (long arrays repeat one)
    if not path:
        return replacement
    parent = payload
    for step in path[:-1]:
        parent = parent[step]
    if replacement is _DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return payload


@dataclass(frozen=True)
class Broken:
    payload: dict[str, Any]
    what: str              # e.g. "required chargingProfile missing at /"
    code: str              # the CALLERROR code Part 4 names for it

    @property
    def schema_valid(self) -> bool:
        """Only an integer beyond 32 bits: the JSON schemas allow it, OCPP does not."""
        return self.what.startswith(BEYOND_32_BITS)


def broken_payloads(action: str, now: Callable[[], datetime]) -> st.SearchStrategy[Broken]:
    """A valid request of `action` broken at exactly one point, with the error code that
    breakage must earn."""
    doc = schema(action, "Request")

    @st.composite
    def build(draw: st.DrawFn) -> Broken:
        payload = draw(payloads(action, now, wide=False))
        choices = list(_breakages(doc, doc, payload, ()))
        path, what, replacement, code = draw(st.sampled_from(choices))
        return Broken(_apply(payload, path, replacement),
                      f"{what} at /{'/'.join(map(str, path))}", code)
    return build()
