#!/usr/bin/env python3
"""Generate agent/ocpp/v201/messages.py and agent/ocpp/v201/schema.py from the official
OCPP 2.0.1 JSON schemas shipped in the `ocpp` package (ocpp/v201/schemas/*.json).

Why: the daemon may not depend on jsonschema or the `ocpp` package at run time, yet every
message it sends or accepts must match the official schemas; generating our own typed
definitions and compact validation tables from them keeps the two in step by construction.

Usage:  python tools/gen_messages.py [--schemas DIR] [--out DIR]

The output is deterministic (names sorted, no timestamps), so tests can check that the
committed files are up to date by regenerating them into a temporary directory.
Anything in the schemas this script does not understand stops it with an error rather
than being skipped: a silently weaker validator would be worse than none.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import keyword
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "agent" / "ocpp" / "v201"

CS = "ChargingStation"
CSMS = "CSMS"
BOTH = "Both"

# Which side sends the request of each action (OCPP 2.0.1 Part 2, the "Messages" chapter).
# Hand-written on purpose: the schemas do not say it. Every schema must appear here and
# every entry must have schemas, or generation fails.
INITIATORS: dict[str, str] = {
    "Authorize": CS,
    "BootNotification": CS,
    "CancelReservation": CSMS,
    "CertificateSigned": CSMS,
    "ChangeAvailability": CSMS,
    "ClearCache": CSMS,
    "ClearChargingProfile": CSMS,
    "ClearDisplayMessage": CSMS,
    "ClearVariableMonitoring": CSMS,
    "ClearedChargingLimit": CS,
    "CostUpdated": CSMS,
    "CustomerInformation": CSMS,
    "DataTransfer": BOTH,
    "DeleteCertificate": CSMS,
    "FirmwareStatusNotification": CS,
    "Get15118EVCertificate": CS,
    "GetBaseReport": CSMS,
    "GetCertificateStatus": CS,
    "GetChargingProfiles": CSMS,
    "GetCompositeSchedule": CSMS,
    "GetDisplayMessages": CSMS,
    "GetInstalledCertificateIds": CSMS,
    "GetLocalListVersion": CSMS,
    "GetLog": CSMS,
    "GetMonitoringReport": CSMS,
    "GetReport": CSMS,
    "GetTransactionStatus": CSMS,
    "GetVariables": CSMS,
    "Heartbeat": CS,
    "InstallCertificate": CSMS,
    "LogStatusNotification": CS,
    "MeterValues": CS,
    "NotifyChargingLimit": CS,
    "NotifyCustomerInformation": CS,
    "NotifyDisplayMessages": CS,
    "NotifyEVChargingNeeds": CS,
    "NotifyEVChargingSchedule": CS,
    "NotifyEvent": CS,
    "NotifyMonitoringReport": CS,
    "NotifyReport": CS,
    "PublishFirmware": CSMS,
    "PublishFirmwareStatusNotification": CS,
    "ReportChargingProfiles": CS,
    "RequestStartTransaction": CSMS,
    "RequestStopTransaction": CSMS,
    "ReservationStatusUpdate": CS,
    "ReserveNow": CSMS,
    "Reset": CSMS,
    "SecurityEventNotification": CS,
    "SendLocalList": CSMS,
    "SetChargingProfile": CSMS,
    "SetDisplayMessage": CSMS,
    "SetMonitoringBase": CSMS,
    "SetMonitoringLevel": CSMS,
    "SetNetworkProfile": CSMS,
    "SetVariableMonitoring": CSMS,
    "SetVariables": CSMS,
    "SignCertificate": CS,
    "StatusNotification": CS,
    "TransactionEvent": CS,
    "TriggerMessage": CSMS,
    "UnlockConnector": CSMS,
    "UnpublishFirmware": CSMS,
    "UpdateFirmware": CSMS,
}

# Keywords accepted per kind of node. Anything else is an error (see the module docstring).
# "description", "javaType", "comment" and "default" do not constrain a value.
_ROOT_KEYS = {"$schema", "$id", "id", "comment", "description", "definitions", "type",
              "additionalProperties", "properties", "required"}
_OBJECT_KEYS = {"description", "javaType", "type", "additionalProperties", "properties",
                "required"}
_ENUM_KEYS = {"description", "javaType", "type", "additionalProperties", "enum", "default"}
_PROP_KEYS = {
    "$ref": {"$ref", "description"},
    "string": {"type", "description", "maxLength", "format", "default"},
    "integer": {"type", "description", "minimum", "maximum", "default"},
    "number": {"type", "description", "minimum", "maximum", "default"},
    "boolean": {"type", "description", "default"},
    "array": {"type", "description", "items", "minItems", "maxItems", "additionalItems"},
    "any": {"description"},
}
_FORMATS = {"date-time"}

Number = Union[int, float]


class SchemaError(Exception):
    """Something in the schemas this generator does not support."""


@dataclass(frozen=True)
class Prop:
    """One property's value: its kind and the constraints that apply to it."""

    kind: str  # object | enum | string | integer | number | boolean | array | any
    ref: str | None = None  # type name, for kind object and enum
    max_length: int | None = None
    format: str | None = None
    minimum: Number | None = None
    maximum: Number | None = None
    items: Prop | None = None  # for kind array
    min_items: int | None = None
    max_items: int | None = None


@dataclass(frozen=True)
class ObjectDef:
    name: str
    properties: tuple[tuple[str, Prop], ...]  # sorted by name
    required: tuple[str, ...]  # sorted
    extra: bool  # additional properties allowed


@dataclass(frozen=True)
class EnumDef:
    name: str
    values: tuple[str, ...]  # in schema order


Def = Union[ObjectDef, EnumDef]


@dataclass
class Model:
    """All messages, after definitions shared between schemas were merged (or split)."""

    objects: dict[str, ObjectDef] = field(default_factory=dict)  # definitions and roots
    enums: dict[str, EnumDef] = field(default_factory=dict)
    roots: dict[str, tuple[str, str]] = field(default_factory=dict)  # action -> names
    clashes: dict[str, list[str]] = field(default_factory=dict)  # name -> variant names


# --- reading ---------------------------------------------------------------------------

def default_schema_dir() -> Path:
    root = importlib.resources.files("ocpp") / "v201" / "schemas"
    return Path(str(root))


def _check_keys(node: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(node) - allowed
    if unknown:
        raise SchemaError(f"{where}: unsupported keyword(s) {sorted(unknown)}")


def _parse_prop(node: Any, where: str) -> Prop:
    if not isinstance(node, dict):
        raise SchemaError(f"{where}: not a schema object")
    if "$ref" in node:
        _check_keys(node, _PROP_KEYS["$ref"], where)
        ref = node["$ref"]
        prefix = "#/definitions/"
        if not isinstance(ref, str) or not ref.startswith(prefix):
            raise SchemaError(f"{where}: unsupported $ref {ref!r}")
        # Kind "ref" is resolved to "object" or "enum" once all definitions are read.
        return Prop("ref", ref=ref[len(prefix):])
    kind = node.get("type", "any")
    if (not isinstance(kind, str) or kind not in _PROP_KEYS or kind == "$ref"
            or ("type" not in node) != (kind == "any")):
        raise SchemaError(f"{where}: unsupported type {kind!r}")
    _check_keys(node, _PROP_KEYS[kind], where)
    if kind == "string":
        fmt = node.get("format")
        if fmt is not None and fmt not in _FORMATS:
            raise SchemaError(f"{where}: unsupported format {fmt!r}")
        return Prop("string", max_length=_int(node, "maxLength", where), format=fmt)
    if kind in ("integer", "number"):
        return Prop(kind, minimum=_num(node, "minimum", where),
                    maximum=_num(node, "maximum", where))
    if kind == "array":
        if node.get("additionalItems", False) is not False:
            raise SchemaError(f"{where}: additionalItems other than false")
        items = node.get("items")
        if not isinstance(items, dict):
            raise SchemaError(f"{where}: array items must be one schema")
        return Prop("array", items=_parse_prop(items, where + "[]"),
                    min_items=_int(node, "minItems", where),
                    max_items=_int(node, "maxItems", where))
    return Prop(kind)


def _int(node: dict[str, Any], key: str, where: str) -> int | None:
    value = node.get(key)
    if value is not None and (type(value) is not int or value < 0):
        raise SchemaError(f"{where}: {key} must be a non-negative integer")
    return value


def _num(node: dict[str, Any], key: str, where: str) -> Number | None:
    value = node.get(key)
    if value is not None and type(value) not in (int, float):
        raise SchemaError(f"{where}: {key} must be a number")
    return value


def _parse_object(name: str, node: dict[str, Any], allowed: set[str], where: str) -> ObjectDef:
    _check_keys(node, allowed, where)
    if node.get("type") != "object":
        raise SchemaError(f"{where}: expected type object")
    extra = node.get("additionalProperties", True)
    if not isinstance(extra, bool):
        raise SchemaError(f"{where}: additionalProperties must be true or false")
    properties = node.get("properties", {})
    required = node.get("required", [])
    if not isinstance(properties, dict) or not isinstance(required, list):
        raise SchemaError(f"{where}: malformed properties or required")
    missing = [r for r in required if r not in properties]
    if missing or len(set(required)) != len(required):
        raise SchemaError(f"{where}: required names {missing or required} are not properties")
    props = tuple((p, _parse_prop(properties[p], f"{where}.{p}")) for p in sorted(properties))
    return ObjectDef(name, props, tuple(sorted(required)), extra)


def _parse_definition(name: str, node: Any, where: str) -> Def:
    if not isinstance(node, dict):
        raise SchemaError(f"{where}: not a schema object")
    if "enum" in node:
        _check_keys(node, _ENUM_KEYS, where)
        values = node["enum"]
        if (node.get("type") != "string" or not isinstance(values, list) or not values
                or not all(isinstance(v, str) for v in values) or len(set(values)) != len(values)):
            raise SchemaError(f"{where}: only enums of distinct strings are supported")
        return EnumDef(name, tuple(values))
    return _parse_object(name, node, _OBJECT_KEYS, where)


def read_schemas(schema_dir: Path) -> dict[str, tuple[ObjectDef, dict[str, Def]]]:
    """Schema name (e.g. "BootNotificationRequest") -> (root, its local definitions)."""
    out: dict[str, tuple[ObjectDef, dict[str, Def]]] = {}
    for path in sorted(schema_dir.glob("*.json")):
        stem = path.stem
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
        if not isinstance(doc, dict):
            raise SchemaError(f"{path.name}: not a schema object")
        defs = {n: _parse_definition(n, d, f"{stem}#{n}")
                for n, d in sorted(doc.get("definitions", {}).items())}
        root_node = {k: v for k, v in doc.items() if k != "definitions"}
        root = _parse_object(stem, root_node, _ROOT_KEYS, stem)
        out[stem] = (root, defs)
    return out


# --- merging definitions across schemas ---------------------------------------------------

def _resolve_kinds(root: ObjectDef, defs: dict[str, Def],
                   stem: str) -> tuple[ObjectDef, dict[str, Def]]:
    """Turn kind "ref" into "object" or "enum" now that the schema's definitions are known."""

    def prop(p: Prop, where: str) -> Prop:
        if p.kind == "ref":
            target = defs.get(p.ref or "")
            if target is None:
                raise SchemaError(f"{where}: $ref to unknown definition {p.ref!r}")
            return replace(p, kind="enum" if isinstance(target, EnumDef) else "object")
        if p.items is not None:
            return replace(p, items=prop(p.items, where + "[]"))
        return p

    def obj(o: ObjectDef) -> ObjectDef:
        return replace(o, properties=tuple((n, prop(p, f"{stem}#{o.name}.{n}"))
                                           for n, p in o.properties))

    return obj(root), {n: obj(d) if isinstance(d, ObjectDef) else d for n, d in defs.items()}


def _signature(stem: str, name: str, defs: dict[str, Def], memo: dict[tuple[str, str], str],
               active: set[str]) -> str:
    """What a definition means, with everything it references expanded: equal signatures,
    and only those, may share one name."""
    key = (stem, name)
    if key in memo:
        return memo[key]
    if name in active:
        raise SchemaError(f"{stem}: recursive definition {name} is not supported")
    active.add(name)
    d = defs[name]
    if isinstance(d, EnumDef):
        sig = json.dumps(["enum", d.values])
    else:
        sig = json.dumps(["object", d.extra, d.required,
                          [[n, _prop_signature(stem, p, defs, memo, active)]
                           for n, p in d.properties]])
    active.discard(name)
    memo[key] = sig
    return sig


def _prop_signature(stem: str, p: Prop, defs: dict[str, Def],
                    memo: dict[tuple[str, str], str], active: set[str]) -> Any:
    return [p.kind,
            _signature(stem, p.ref, defs, memo, active) if p.ref is not None else None,
            p.max_length, p.format, p.minimum, p.maximum,
            _prop_signature(stem, p.items, defs, memo, active) if p.items is not None else None,
            p.min_items, p.max_items]


def build_model(schemas: dict[str, tuple[ObjectDef, dict[str, Def]]]) -> Model:
    """Merge same-named definitions that mean the same thing; give different ones distinct
    names (suffixed with the first schema using each variant) and record the clash."""
    stems = set(schemas)
    actions = {s.removesuffix("Request") for s in stems if s.endswith("Request")}
    actions |= {s.removesuffix("Response") for s in stems if s.endswith("Response")}
    for action in sorted(actions):
        for suffix in ("Request", "Response"):
            if action + suffix not in stems:
                raise SchemaError(f"{action}: no {action}{suffix} schema")
    strays = stems - {a + s for a in actions for s in ("Request", "Response")}
    if strays:
        raise SchemaError(f"schemas that are neither a request nor a response: {sorted(strays)}")
    if set(INITIATORS) != actions:
        raise SchemaError(
            "INITIATORS does not match the schemas: missing "
            f"{sorted(actions - set(INITIATORS))}, "
            f"without schema {sorted(set(INITIATORS) - actions)}")

    resolved = {stem: _resolve_kinds(root, defs, stem) for stem, (root, defs) in schemas.items()}
    memo: dict[tuple[str, str], str] = {}
    variants: dict[str, dict[str, list[str]]] = {}  # name -> signature -> stems
    for stem in sorted(resolved):
        defs = resolved[stem][1]
        for name in sorted(defs):
            sig = _signature(stem, name, defs, memo, set())
            variants.setdefault(name, {}).setdefault(sig, []).append(stem)

    def global_name(stem: str, name: str) -> str:
        by_sig = variants[name]
        if len(by_sig) == 1:
            return name
        return f"{name}_{by_sig[memo[(stem, name)]][0]}"

    model = Model()
    for name in sorted(variants):
        if len(variants[name]) > 1:
            model.clashes[name] = sorted(f"{name}_{users[0]}" for users in variants[name].values())

    def rename(p: Prop, stem: str) -> Prop:
        if p.ref is not None:
            p = replace(p, ref=global_name(stem, p.ref))
        if p.items is not None:
            p = replace(p, items=rename(p.items, stem))
        return p

    def rename_object(o: ObjectDef, stem: str, new_name: str) -> ObjectDef:
        return ObjectDef(new_name, tuple((n, rename(p, stem)) for n, p in o.properties),
                         o.required, o.extra)

    definitions: dict[str, Def] = {}
    for stem in sorted(resolved):
        root, defs = resolved[stem]
        for name, d in defs.items():
            gname = global_name(stem, name)
            new: Def = (EnumDef(gname, d.values) if isinstance(d, EnumDef)
                        else rename_object(d, stem, gname))
            if definitions.setdefault(gname, new) != new:  # only if _signature were wrong
                raise SchemaError(f"{gname}: two different definitions under one name")
        model.objects[stem] = rename_object(root, stem, stem)
    taken = set(definitions) & stems
    if taken:
        raise SchemaError(f"definitions named like a message: {sorted(taken)}")
    for gname, d in definitions.items():
        if isinstance(d, EnumDef):
            model.enums[gname] = d
        else:
            model.objects[gname] = d
    model.roots = {a: (a + "Request", a + "Response") for a in sorted(actions)}
    return model


# --- writing ------------------------------------------------------------------------------

HEADER = "generated by tools/gen_messages.py, do not edit"
WIDTH = 99


def _lit(value: Any) -> str:
    """A Python literal on one line; strings in double quotes."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        inner = ", ".join(_lit(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_lit(k)}: {_lit(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def _pretty(value: Any, indent: int, prefix: str = "", suffix: str = "") -> list[str]:
    """Lines for `prefix + value + suffix` at this indent, broken up only when too wide."""
    pad = " " * indent
    flat = pad + prefix + _lit(value) + suffix
    if len(flat) <= WIDTH or not isinstance(value, (dict, tuple)) or not value:
        return [flat]
    opener, closer = ("{", "}") if isinstance(value, dict) else ("(", ")")
    lines = [pad + prefix + opener]
    if isinstance(value, dict):
        for k, v in value.items():
            lines += _pretty(v, indent + 4, _lit(k) + ": ", ",")
    else:
        for v in value:
            lines += _pretty(v, indent + 4, "", ",")
    lines.append(pad + closer + suffix)
    return lines


def _prop_table(p: Prop) -> dict[str, Any]:
    t: dict[str, Any] = {"kind": p.kind}
    if p.ref is not None:
        t["ref"] = p.ref
    if p.max_length is not None:
        t["maxLength"] = p.max_length
    if p.format is not None:
        t["format"] = p.format
    if p.minimum is not None:
        t["minimum"] = p.minimum
    if p.maximum is not None:
        t["maximum"] = p.maximum
    if p.items is not None:
        t["items"] = _prop_table(p.items)
    if p.min_items is not None:
        t["minItems"] = p.min_items
    if p.max_items is not None:
        t["maxItems"] = p.max_items
    return t


def _clash_note(model: Model) -> list[str]:
    if not model.clashes:
        return ["# No definition name means different things in different schemas: every",
                "# shared name (e.g. IdTokenType) is one type, verified identical everywhere."]
    lines = ["# Definitions whose name means different things in different schemas, kept apart",
             "# under the name suffixed with the first schema that uses each variant:"]
    for name, names in model.clashes.items():
        lines.append(f"#   {name}: {', '.join(names)}")
    return lines


def render_schema(model: Model) -> str:
    out = [
        f'"""OCPP 2.0.1 payload validation tables, {HEADER}.',
        "",
        "Why: the daemon must check every payload against the official schemas without",
        "jsonschema at run time; agent/ocpp/validation.py compiles these plain tables into",
        "checkers, each action's the first time it is used. Derived from the OCPP 2.0.1 JSON",
        "schemas of the `ocpp` package; descriptions and defaults are left out, constraints",
        "are kept in full.",
        "",
        'object_table(name): {"extra": additional properties allowed, "required": names,',
        '"properties": {name: prop}}; a prop is {"kind": object | enum | string | integer |',
        'number | boolean | array | any, ...} with "ref" (an OBJECTS or ENUMS name),',
        '"maxLength", "format" (only "date-time"), "minimum", "maximum", "items" (a prop),',
        '"minItems", "maxItems" where the schema has them. OBJECTS holds each table as JSON',
        "text: as Python literals the 183 tables cost ~2.5 MB of resident memory in every",
        "daemon, as text ~0.1 MB, and a station decodes only those of the actions it uses.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "import json",
        "from typing import Any",
        "",
        *_clash_note(model),
        "",
        "# Action -> the side that sends its request.",
    ]
    out += _pretty({a: INITIATORS[a] for a in sorted(model.roots)}, 0,
                   "ACTIONS: dict[str, str] = ")
    out += ["", "# Action -> (request type, response type); both are OBJECTS names."]
    out += _pretty(dict(sorted(model.roots.items())), 0, "ROOTS: dict[str, tuple[str, str]] = ")
    out += [""]
    out += _pretty({n: model.enums[n].values for n in sorted(model.enums)}, 0,
                   "ENUMS: dict[str, tuple[str, ...]] = ")
    out += [""]
    objects = {}
    for name in sorted(model.objects):
        o = model.objects[name]
        objects[name] = {"extra": o.extra, "required": o.required,
                         "properties": {n: _prop_table(p) for n, p in o.properties}}
    texts = {name: json.dumps(table, separators=(",", ":"), sort_keys=True)
             for name, table in objects.items()}
    out += ["# Type name -> its table as JSON text (see object_table)."]
    out += ["OBJECTS: dict[str, str] = {"]
    for name, text in texts.items():
        # repr, not _lit: in single quotes the JSON inside reads without escapes.
        out += [f"    {_lit(name)}:"] + [f"        {piece!r}" for piece in _pieces(text)]
        out[-1] += ","
    out += ["}", "", "",
            "def object_table(name: str) -> dict[str, Any]:",
            '    """The table of one object type (KeyError for an unknown name)."""',
            "    table: dict[str, Any] = json.loads(OBJECTS[name])",
            "    return table"]
    return "\n".join(out) + "\n"


def _pieces(text: str, width: int = WIDTH - 10) -> list[str]:
    """JSON text cut into string literals that fit a line (adjacent ones concatenate)."""
    return [text[i:i + width] for i in range(0, len(text), width)] or [""]


_PY_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool",
             "any": "Any"}


def _py_type(p: Prop) -> str:
    if p.kind in ("object", "enum"):
        assert p.ref is not None
        return p.ref
    if p.kind == "array":
        assert p.items is not None
        return f"list[{_py_type(p.items)}]"
    return _PY_TYPES[p.kind]


def _constraints(p: Prop) -> list[str]:
    notes = []
    if p.max_length is not None:
        notes.append(f"maxLength {p.max_length}")
    if p.format is not None:
        notes.append(f"{p.format} (RFC 3339, with time zone)")
    if p.minimum is not None:
        notes.append(f">= {p.minimum}")
    if p.maximum is not None:
        notes.append(f"<= {p.maximum}")
    if p.kind == "array":
        lo, hi = p.min_items or 0, p.max_items
        notes.append(f"{lo}..{hi if hi is not None else 'n'} items")
        assert p.items is not None
        notes += [f"each {n}" for n in _constraints(p.items)]
    return notes


def _object_order(model: Model) -> list[str]:
    """Definitions before their users (no forward references), ties broken by name."""
    order: list[str] = []
    seen: set[str] = set()

    def refs(p: Prop) -> list[str]:
        if p.kind == "object" and p.ref is not None:
            return [p.ref]
        return refs(p.items) if p.items is not None else []

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for _, p in model.objects[name].properties:
            for r in refs(p):
                visit(r)
        order.append(name)

    roots = {n for pair in model.roots.values() for n in pair}
    for name in sorted(set(model.objects) - roots):
        visit(name)
    for action in sorted(model.roots):
        for name in model.roots[action]:
            visit(name)
    return order


def _render_typeddict(o: ObjectDef) -> list[str]:
    fields = []
    for n, p in o.properties:
        t = _py_type(p)
        fields.append((n, t if n in o.required else f"NotRequired[{t}]", _constraints(p)))
    doc = []
    if o.extra:
        doc.append('    """Vendor-specific extra properties are allowed on the wire."""')
    if all(n.isidentifier() and not keyword.iskeyword(n) for n, _, _ in fields):
        lines = [f"class {o.name}(TypedDict):"] + doc
        for n, t, notes in fields:
            line = f"    {n}: {t}"
            lines.append(line + (f"  # {', '.join(notes)}" if notes else ""))
        if not fields and not doc:
            lines.append("    pass")
        return lines
    # A field name Python cannot spell in a class body: the functional syntax can.
    lines = [f"{o.name} = TypedDict({json.dumps(o.name)}, {{"]
    for n, t, notes in fields:
        lines.append(f"    {json.dumps(n)}: {t}," + (f"  # {', '.join(notes)}" if notes else ""))
    lines.append("})")
    return lines


def render_messages(model: Model) -> str:
    out = [
        f'"""Typed OCPP 2.0.1 messages, {HEADER}.',
        "",
        "Why: handlers build and read plain dicts, exactly what goes on the wire; these",
        "TypedDicts let a type checker hold those dicts to the spec's field names (camelCase,",
        "as on the wire), value types and required fields. Names follow the official JSON",
        "schemas: <Action>Request / <Action>Response, nested types and enums as defined there.",
        "Constraints a type cannot express (lengths, ranges, date-time) are noted in comments",
        "and enforced at run time by agent.ocpp.validation.",
        '"""',
        "",
        "# No `from __future__ import annotations`: Python 3.11 would then not see NotRequired",
        "# (all keys would count as required). Types come before their users instead.",
        "from typing import Any, Literal, NotRequired, TypedDict",
        "",
        *_clash_note(model),
    ]
    for name in sorted(model.enums):
        values = model.enums[name].values
        out.append("")
        flat = f"{name} = Literal[{', '.join(json.dumps(v) for v in values)}]"
        if len(flat) <= WIDTH:
            out.append(flat)
        else:
            out.append(f"{name} = Literal[")
            out += [f"    {json.dumps(v)}," for v in values]
            out.append("]")
    for name in _object_order(model):
        out += ["", ""] + _render_typeddict(model.objects[name])
    return "\n".join(out) + "\n"


def render(model: Model) -> dict[str, str]:
    """File name -> content of the generated modules."""
    return {"messages.py": render_messages(model), "schema.py": render_schema(model)}


def generate(schema_dir: Path) -> dict[str, str]:
    return render(build_model(read_schemas(schema_dir)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--schemas", type=Path, default=None,
                        help="directory of OCPP 2.0.1 JSON schemas (default: the ocpp package's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output directory (default: {DEFAULT_OUT.relative_to(REPO_ROOT)})")
    args = parser.parse_args(argv)
    schema_dir = args.schemas or default_schema_dir()
    if not any(schema_dir.glob("*.json")):
        print(f"gen_messages: no *.json schemas in {schema_dir}", file=sys.stderr)
        return 1
    try:
        model = build_model(read_schemas(schema_dir))
    except SchemaError as exc:
        print(f"gen_messages: {exc}", file=sys.stderr)
        return 1
    for name, variants in model.clashes.items():
        print(f"gen_messages: note: {name} differs between schemas; generated as "
              f"{', '.join(variants)}", file=sys.stderr)
    files = render(model)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
