"""Request parameter validation for the emulator, as Proxmox VE itself does it.

Role: load the packaged subset of the official PVE 9.2 API schema (``data/pve-api-schema.json``,
provenance in ``data/README.md``) and check the parameters of one request against the endpoint's
``parameters`` schema the way ``PVE::JSONSchema::validate`` (pve-common ``src/PVE/JSONSchema.pm``)
does: every failing parameter is reported, with PVE's own message text, in
``ParamError.errors``; the router answers ``400 Parameter verification failed.`` with
``{"data": null, "errors": ...}``.

Fidelity notes (each checked against the Proxmox source named next to it):

* Booleans: the API accepts only ``"1"`` and ``"0"`` (``check_type``; the ``yes|on|true`` regex
  there is commented out) plus JSON ``true``/``false`` and the JSON numbers 1/0. ``yes``/``true``
  are accepted by the CLI and the config-file parsers only; the API answers
  ``type check ('boolean') failed - got 'true'`` (also reported against a live 9.2 in
  GitHub ry-ops/proxmox-mcp-server issue #30).
* ``vmid=99`` fails the ``pve-vmid`` *format* before the minimum is looked at, so PVE reports
  ``invalid format - value does not look like a valid VM ID`` for it; checks run in PVE's order
  (type, format, pattern, maxLength, minLength, maximum, minimum, enum; first failure wins).
* Format messages keep the trailing newline(s) of the Perl ``die`` text, as the real server
  sends them (``...storage ID 'x' contains illegal characters\\n\\n\\n`` for storage pairs).
* Repeated form/query keys arrive joined by NUL (pve-http-server ``decode_urlencoded``); a
  ``-list`` format splits them again (``PVE::Tools::split_list``). The ExtJS cache buster
  ``_dc`` is dropped before validation (pve-http-server ``handle_api2_request``).
* A ``-list`` format checks each entry on its own, so ``targetstorage=local:ceph,local:rbd``
  passes the schema; :func:`parse_idmap` does the whole-map checks the migrate handler does
  afterwards (qemu-server ``migrate_vm``: ``failed to parse storage map: ...``).

Imports: the standard library and the emulator's `specs` (PVE's privileges); no jsonschema at
runtime (that is a test dependency).
"""

from __future__ import annotations

import functools
import importlib.resources
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pvetool.emulator.specs import PRIVILEGES

__all__ = ["ApiSchema", "IdMap", "ParamError", "is_format_supported", "parse_idmap", "split_list"]

DATA_FILE = "data/pve-api-schema.json"


class ParamError(Exception):
    """Parameter verification failed; ``errors`` maps parameter name to PVE's message."""

    MESSAGE = "Parameter verification failed."

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__(self.MESSAGE)
        self.errors: dict[str, str] = dict(errors)


class _FormatError(Exception):
    """A format validator refused a value; ``text`` is the Perl ``die`` text, newline included."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


# --- scalar helpers mirroring Perl -------------------------------------------------------------

# A JSON body may carry these; Perl sees them as references and names them so in messages.
_JSON_BOOL_REF = "JSON::PP::Boolean"
_NUMBER_RE = re.compile(r"^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$")
_INTEGER_RE = re.compile(r"^[+-]?\d+$")


def _perl_str(value: object) -> str:
    """Stringify a JSON scalar the way Perl would interpolate it."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format(value, ".15g")
    return str(value)


def _perl_true(value: str) -> bool:
    return value not in ("", "0")


def _ref_name(value: object) -> str | None:
    """Perl's ``ref($value)`` for a decoded JSON value, or None for a plain scalar."""
    if isinstance(value, bool):
        return _JSON_BOOL_REF
    if isinstance(value, dict):
        return "HASH"
    if isinstance(value, list):
        return "ARRAY"
    return None


def _is_number(value: str) -> bool:
    return _NUMBER_RE.match(value) is not None


def split_list(text: str) -> list[str]:
    """``PVE::Tools::split_list``: NUL-separated if it holds a NUL, else commas/semicolons/space."""
    if "\0" in text:
        parts = text.split("\0")
        while parts and parts[-1] == "":  # Perl's split drops trailing empty fields
            parts.pop()
        return parts
    return re.sub(r"[,;]", " ", text).split()


@functools.lru_cache(maxsize=256)
def _compile_perl_pattern(pattern: str) -> re.Pattern[str]:
    """PVE matches ``m/^$pattern$/``; translate the stringified-qr and POSIX-class spellings."""

    def group_open(match: re.Match[str]) -> str:
        flags = match.group(1).replace("u", "")  # Python str patterns are Unicode already
        return f"(?{flags}:" if flags else "(?:"

    py = re.sub(r"\(\?\^([a-z]*):", group_open, pattern)  # Perl's "(?^flags:" of a qr//
    for posix, chars in (
        ("[:alnum:]", "a-zA-Z0-9"),
        ("[:alpha:]", "a-zA-Z"),
        ("[:digit:]", "0-9"),
        ("[:space:]", r"\s"),
    ):
        py = py.replace(posix, chars)
    return re.compile(f"^(?:{py})$")


# --- formats (PVE::JSONSchema::register_format and friends) -----------------------------------

_Validator = Callable[[str], None]


def _regex_format(regex: str, message: str, flags: int = 0) -> _Validator:
    compiled = re.compile(regex, flags)

    def check(value: str) -> None:
        if compiled.match(value) is None:
            raise _FormatError(message.format(value=value))

    return check


_IPV4_OCTET = r"(?:25[0-5]|(?:2[0-4]|1[0-9]|[1-9])?[0-9])"
_IPV4_RE = re.compile(rf"^(?:{_IPV4_OCTET}\.){{3}}{_IPV4_OCTET}$")


def _is_ipv4(text: str) -> bool:
    return _IPV4_RE.match(text) is not None


def _is_ipv6(text: str) -> bool:
    if "%" in text or not text or text.strip() != text:  # PVE's IPV6RE has no zone index
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _cidr_ok(text: str, is_addr: Callable[[str], bool], max_bits: int) -> bool:
    # pve_verify_cidrv4/6: "<addr>/<bits>" with 7 < bits <= 32 (128 for IPv6)
    addr, slash, bits = text.rpartition("/")
    if not slash or not re.fullmatch(r"[0-9]+", bits):
        return False
    return is_addr(addr) and 7 < int(bits) <= max_bits


def _verify_cidr(value: str) -> None:
    if not (_cidr_ok(value, _is_ipv4, 32) or _cidr_ok(value, _is_ipv6, 128)):
        raise _FormatError("value does not look like a valid CIDR network\n")


def _verify_cidrv4(value: str) -> None:
    if not _cidr_ok(value, _is_ipv4, 32):
        raise _FormatError("value does not look like a valid IPv4 CIDR network\n")


def _verify_cidrv6(value: str) -> None:
    if not _cidr_ok(value, _is_ipv6, 128):
        raise _FormatError("value does not look like a valid IPv6 CIDR network\n")


def _verify_ipv4(value: str) -> None:
    if not _is_ipv4(value):
        raise _FormatError("value does not look like a valid IPv4 address\n")


def _verify_ipv6(value: str) -> None:
    if not _is_ipv6(value):
        raise _FormatError("value does not look like a valid IPv6 address\n")


def _verify_ip(value: str) -> None:
    if not (_is_ipv4(value) or _is_ipv6(value)):
        raise _FormatError("value does not look like a valid IP address\n")


_verify_storage_id = _regex_format(
    r"^[a-z][a-z0-9\-_.]*[a-z0-9]$",
    "storage ID '{value}' contains illegal characters\n",
    re.IGNORECASE,
)


def _verify_storage_pair(value: str) -> None:
    # verify_storagepair: parse_idmap on ONE list entry; $verify_idpair re-dies with "$@\n".
    try:
        parse_idmap(value, _verify_storage_id)
    except ValueError as exc:
        raise _FormatError(f"{exc}\n") from exc


def _verify_pool_id(value: str) -> None:
    # pve-access-control verify_poolname: [A-Za-z0-9.-_]+. PVE 8.1+ nests pools as
    # "parent/child" (that is why GET /pools takes ?poolid=); accept up to three levels.
    parts = value.split("/")
    if len(parts) > 3 or not all(re.match(r"^[A-Za-z0-9.\-_]+$", p) for p in parts):
        raise _FormatError(f"pool name '{value}' contains invalid characters\n")


def _verify_priv(value: str) -> None:
    if value not in PRIVILEGES:
        raise _FormatError(f"invalid privilege '{value}'\n")


# pve-storage verify_content: the 'dir' plugin's content types, plus 'import'.
_CONTENT_TYPES = frozenset(
    ("images", "rootdir", "vztmpl", "iso", "backup", "snippets", "none", "import")
)


def _verify_content(value: str) -> None:
    if value not in _CONTENT_TYPES:
        raise _FormatError(f"invalid content type '{value}'\n")


def _noop(value: str) -> None:
    return None


# Code-ref formats by registered name. Source of each regex and message text:
# pve-common src/PVE/JSONSchema.pm unless noted.
_FORMATS: dict[str, _Validator] = {
    "string": _noop,
    "pve-node": _regex_format(
        r"^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)$",
        "value does not look like a valid node name\n",
    ),
    "pve-vmid": _regex_format(r"^[1-9][0-9]{2,8}$", "value does not look like a valid VM ID\n"),
    "pve-configid": _regex_format(
        r"^[a-z][a-z0-9_-]+$", "invalid configuration ID '{value}'\n", re.IGNORECASE
    ),
    "pve-storage-id": _verify_storage_id,
    "pve-bridge-id": _regex_format(r"^[-_.\w\d]+$", "invalid bridge ID '{value}'\n"),
    "storage-pair": _verify_storage_pair,
    "CIDR": _verify_cidr,
    "CIDRv4": _verify_cidrv4,
    "CIDRv6": _verify_cidrv6,
    "ipv4": _verify_ipv4,
    "ipv6": _verify_ipv6,
    "ip": _verify_ip,
    "pve-task-status-type": _regex_format(
        r"^(ok|error|warning|unknown)$", "invalid status '{value}'\n", re.IGNORECASE
    ),
    # pve-storage src/PVE/Storage/Plugin.pm
    "pve-storage-content": _verify_content,
    # pve-ha-manager src/PVE/HA/Tools.pm
    "pve-ha-resource-id": _regex_format(
        r"^[a-z]+:\S+$", "value does not look like a valid ha resource id\n"
    ),
    "pve-ha-resource-or-vm-id": _regex_format(
        r"^([a-z]+:\S+|\d+)$", "value does not look like a valid ha resource id\n"
    ),
    "pve-ha-node": _regex_format(
        r"^([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?)(:\d+)?$",
        "value does not look like a valid ha node\n",
    ),
    # pve-access-control src/PVE/AccessControl.pm and src/PVE/Auth/Plugin.pm
    "pve-poolid": _verify_pool_id,
    "pve-priv": _verify_priv,
    "pve-realm": _regex_format(
        r"^[A-Za-z][A-Za-z0-9.\-_]+$", "value does not look like a valid realm\n"
    ),
}

_FORMAT_NAME_RE = re.compile(r"^(.*?)(?:-(list|opt))?$", re.DOTALL)


def is_format_supported(fmt: object) -> bool:
    """True if ``fmt`` (a schema ``format`` value) is checked here rather than passed through."""
    if isinstance(fmt, dict):
        return all(
            is_format_supported(sub.get("format", "string"))
            for sub in fmt.values()
            if isinstance(sub, dict)
        )
    if not isinstance(fmt, str):
        return False
    if fmt == "regex":
        return True
    match = _FORMAT_NAME_RE.match(fmt)
    return match is not None and match.group(1) in _FORMATS


def _check_format(fmt: object, value: str, path: str) -> None:
    """``PVE::JSONSchema::check_format``; raises _FormatError with the die text."""
    if isinstance(fmt, dict):
        _parse_property_string(fmt, value, path)
        return
    if not isinstance(fmt, str) or fmt == "regex":
        return
    match = _FORMAT_NAME_RE.match(fmt)
    validator = _FORMATS.get(match.group(1)) if match else None
    if validator is None or match is None:
        return  # not implemented here: unchecked (a unit test keeps the served subset covered)
    kind = match.group(2)
    if kind == "list":
        for entry in split_list(value):  # "we allow empty lists"
            validator(entry)
    elif kind == "opt":
        if _perl_true(value):
            validator(value)
    else:
        validator(value)


def _parse_boolean(value: str) -> str | None:
    if re.match(r"^(1|on|yes|true)$", value, re.IGNORECASE):
        return "1"
    if re.match(r"^(0|off|no|false)$", value, re.IGNORECASE):
        return "0"
    return None


def _parse_property_string(fmt: Mapping[str, Any], data: str, path: str) -> dict[str, str]:
    """``PVE::JSONSchema::parse_property_string`` for a format given as a dict of sub-keys."""
    res: dict[str, str] = {}
    default_key: str | None = None
    for part in data.split(","):
        if re.match(r"^\s*$", part):
            continue
        pair = re.match(r"^([^=]+)=(.+)$", part)
        if pair:
            key, val = pair.group(1), pair.group(2)
            if key in res:
                raise _FormatError(f"duplicate key in comma-separated list property: {key}\n")
            schema = fmt.get(key)
            if isinstance(schema, dict) and schema.get("alias"):
                key_alias = schema.get("keyAlias")
                if key_alias:
                    if key_alias in res:
                        raise _FormatError(f"key alias '{key_alias}' is already defined\n")
                    res[key_alias] = key
                key = schema["alias"]
                schema = fmt.get(key)
            if not schema:
                raise _FormatError(f"invalid key in comma-separated list property: {key}\n")
            if schema.get("type") == "boolean":
                val = _parse_boolean(val) or val
            res[key] = val
        elif "=" not in part:
            if default_key:
                raise _FormatError(
                    f"duplicate key in comma-separated list property: {default_key}\n"
                )
            for key, sub in fmt.items():
                if isinstance(sub, dict) and sub.get("default_key"):
                    default_key = key
                    if not res.get(key):
                        res[key] = part
                        break
                    raise _FormatError(
                        f"duplicate key in comma-separated list property: {default_key}\n"
                    )
            if not default_key:
                raise _FormatError("value without key, but schema does not define a default key\n")
        else:
            raise _FormatError("missing key in comma-separated list property\n")

    errors: dict[str, str] = {}
    _check_object(path, fmt, res, False, errors)
    if errors:
        # PVE::Exception stringification: message, then "<path>: <error>\n" per error
        raise _FormatError("format error\n" + "".join(f"{k}: {v}\n" for k, v in errors.items()))
    return res


# --- the checker (PVE::JSONSchema::check_prop / check_object / check_type) --------------------


def _add_error(errors: dict[str, str], path: str, msg: str) -> None:
    path = path or "_root"
    # Perl joins with '\n' in single quotes: a literal backslash and n, not a newline.
    errors[path] = errors[path] + "\\n" + msg if path in errors else msg


def _check_type(path: str, type_: object, value: object, errors: dict[str, str]) -> bool:
    if not type_:
        return True
    if isinstance(type_, list):
        for alternative in type_:
            if _check_type(path, alternative, value, {}):
                return True
        _add_error(errors, path, f"type check ('{'|'.join(map(str, type_))}') failed")
        return False
    if type_ == "any":
        return True
    if type_ == "null":
        _add_error(errors, path, f"type check ('{type_}') failed - value is not null")
        return False
    ref = _ref_name(value)
    if type_ == "array" or type_ == "object":
        if ref != ("ARRAY" if type_ == "array" else "HASH"):
            _add_error(errors, path, f"type check ('{type_}') failed")
            return False
        return True
    if ref is not None:
        if type_ == "boolean" and ref == _JSON_BOOL_REF:
            return True
        _add_error(errors, path, f"type check ('{type_}') failed - got {ref}")
        return False
    text = _perl_str(value)
    ok = {
        "boolean": text in ("1", "0"),
        "integer": _INTEGER_RE.match(text) is not None,
        "number": _is_number(text),
    }.get(str(type_), True)
    if not ok:
        _add_error(errors, path, f"type check ('{type_}') failed - got '{text}'")
    return ok


def _check_prop(
    value: object, schema: Mapping[str, Any], path: str, errors: dict[str, str]
) -> None:
    if value is None:
        if schema.get("type") == "null":
            return
        if not (schema.get("optional") or schema.get("alias") or schema.get("group")):
            _add_error(errors, path, "property is missing and it is not optional")
        return
    if not _check_type(path, schema.get("type"), value, errors):
        return
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for index, element in enumerate(value):
                _check_prop(element, items, f"{path}[{index}]", errors)
        return
    if isinstance(value, dict):
        if schema.get("properties") or schema.get("additionalProperties"):
            _check_object(
                path,
                schema.get("properties") or {},
                value,
                schema.get("additionalProperties"),
                errors,
            )
        return
    if isinstance(value, bool):
        return  # a JSON boolean accepted for type boolean: nothing else applies
    text = _perl_str(value)
    fmt = schema.get("format")
    if fmt:
        try:
            _check_format(fmt, text, path)
        except _FormatError as exc:
            _add_error(errors, path, f"invalid format - {exc.text}")
            return
    pattern = schema.get("pattern")
    if pattern and _compile_perl_pattern(str(pattern)).match(text) is None:
        _add_error(errors, path, "value does not match the regex pattern")
        return
    max_length = schema.get("maxLength")
    if max_length is not None and len(text) > float(max_length):
        _add_error(errors, path, f"value may only be {_perl_str(max_length)} characters long")
        return
    min_length = schema.get("minLength")
    if min_length is not None and len(text) < float(min_length):
        _add_error(errors, path, f"value must be at least {_perl_str(min_length)} characters long")
        return
    if _is_number(text):
        maximum = schema.get("maximum")
        if maximum is not None and float(text) > float(maximum):
            _add_error(errors, path, f"value must have a maximum value of {_perl_str(maximum)}")
            return
        minimum = schema.get("minimum")
        if minimum is not None and float(text) < float(minimum):
            _add_error(errors, path, f"value must have a minimum value of {_perl_str(minimum)}")
            return
    enum = schema.get("enum")
    if enum and text not in [_perl_str(e) for e in enum]:
        _add_error(
            errors,
            path,
            f"value '{text}' does not have a value in the enumeration '"
            + ", ".join(_perl_str(e) for e in enum)
            + "'",
        )


def _check_object(
    path: str,
    properties: Mapping[str, Any],
    value: Mapping[str, object],
    additional: object,
    errors: dict[str, str],
) -> None:
    for key, subschema in properties.items():
        _check_prop(value.get(key), subschema, f"{path}.{key}" if path else key, errors)
    for key in value:
        newpath = f"{path}.{key}" if path else key
        subschema = properties.get(key)
        if subschema is not None:
            requires = subschema.get("requires")
            if isinstance(requires, str) and value.get(requires) is None:
                _add_error(
                    errors,
                    f"{path}.{requires}" if path else requires,
                    f"missing property - '{newpath}' requires this property",
                )
            elif isinstance(requires, dict):
                _check_prop(value, requires, path, errors)
            continue
        if additional is not None and not additional:
            _add_error(
                errors,
                newpath,
                "property is not defined in schema and the schema "
                "does not allow additional properties",
            )
            continue
        if isinstance(additional, dict):
            _check_prop(value[key], additional, newpath, errors)


# --- conversion of validated wire values ----------------------------------------------------


def _convert(value: object, schema: Mapping[str, Any]) -> object:
    type_ = schema.get("type")
    if type_ == "boolean":
        return value if isinstance(value, bool) else _perl_str(value) == "1"
    if type_ == "integer":
        return int(_perl_str(value))
    if type_ == "number":
        return float(_perl_str(value))
    if type_ in ("string", None) and _ref_name(value) is None:
        return _perl_str(value)
    return value


def _normalize_wire_value(value: object, schema: Mapping[str, Any] | None) -> object:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return value
    fmt = schema.get("format") if schema else None
    if isinstance(fmt, str) and fmt.endswith("-list"):
        return ",".join(value)  # RESTHandler $normalize_legacy_param_formats
    return "\0".join(value)  # pve-http-server decode_urlencoded, "like CGI.pm"


# --- storage/bridge maps (PVE::JSONSchema::parse_idmap / map_id) -----------------------------


@dataclass(frozen=True)
class IdMap:
    """A parsed ``storage-pair-list``: ``1`` (identity), a default target, and/or pairs."""

    identity: bool = False
    default: str | None = None
    entries: Mapping[str, str] = field(default_factory=dict)

    def map(self, source: str) -> str:
        """``PVE::JSONSchema::map_id``: explicit entry, else the default, else identity."""
        if source in self.entries:
            return self.entries[source]
        return self.default or source

    @property
    def given(self) -> bool:
        """A map was passed at all (an empty IdMap stands for "no targetstorage")."""
        return self.identity or self.default is not None or bool(self.entries)

    def targets(self) -> list[str]:
        """The target storages it names (entries, then the default), as PVE checks them."""
        out = list(dict.fromkeys(self.entries.values()))
        if self.default is not None and self.default not in out:
            out.append(self.default)
        return out


def parse_idmap(text: str, id_check: _Validator | None = None) -> IdMap:
    """``PVE::JSONSchema::parse_idmap``; raises ValueError with PVE's text (newline included).

    ``id_check`` validates each ID (default: ``pve-storage-id``). The migrate handlers wrap the
    message as ``failed to parse storage map: <text>`` for parameter ``targetstorage``.
    """
    check = id_check or _verify_storage_id
    identity, default = False, None
    entries: dict[str, str] = {}
    for entry in split_list(text):
        if entry == "1":
            identity = True
            continue
        pair = re.match(r"^([^:]+):([^:]+)$", entry)
        try:
            if pair:
                check(pair.group(1))
                check(pair.group(2))
            else:
                check(entry)
        except _FormatError as exc:
            raise ValueError(f"entry '{entry}' contains invalid ID - {exc.text}\n") from exc
        if pair:
            source, target = pair.group(1), pair.group(2)
            if source in entries:
                raise ValueError(f"duplicate mapping for source '{source}'\n")
            entries[source] = target
        else:
            if default is not None:
                raise ValueError("default target ID can only be provided once\n")
            default = entry
    if identity and (default or entries):
        raise ValueError("identity mapping cannot be combined with other mappings\n")
    return IdMap(identity=identity, default=default, entries=entries)


# --- the packaged schema ---------------------------------------------------------------------


class ApiSchema:
    """The served endpoints' method definitions, keyed by (METHOD, template path)."""

    def __init__(
        self, endpoints: Mapping[str, dict[str, Any]], provenance: Mapping[str, Any] | None = None
    ) -> None:
        self._endpoints = dict(endpoints)
        self.provenance: dict[str, Any] = dict(provenance or {})

    @classmethod
    def load(cls) -> ApiSchema:
        """The packaged subset (read once per process)."""
        return _load_packaged()

    def endpoint(self, method: str, template: str) -> dict[str, Any]:
        """The method definition; KeyError if the emulator does not serve it."""
        return self._endpoints[f"{method.upper()} {template}"]

    def templates(self) -> list[tuple[str, str]]:
        """(METHOD, template path) pairs, in the data file's order."""
        return [(key.split(" ", 1)[0], key.split(" ", 1)[1]) for key in self._endpoints]

    def validate_params(
        self, method: str, template: str, params: Mapping[str, object]
    ) -> dict[str, Any]:
        """Check wire parameters (path + query/body) and return them as Python values.

        Values may be strings, lists of strings (repeated keys) or JSON scalars. Booleans come
        back as bool, integers as int, numbers as float, everything else as str (property
        strings are validated but stay strings). Parameters given as JSON null count as absent.
        Raises ParamError listing every failing parameter with PVE's message.
        """
        schema = self.endpoint(method, template).get("parameters") or {}
        properties: Mapping[str, Any] = schema.get("properties") or {}
        wire = {
            key: _normalize_wire_value(value, properties.get(key))
            for key, value in params.items()
            if key != "_dc"
        }
        errors: dict[str, str] = {}
        _check_object("", properties, wire, schema.get("additionalProperties"), errors)
        if errors:
            raise ParamError(errors)
        return {
            key: _convert(value, properties.get(key) or {})
            for key, value in wire.items()
            if value is not None
        }


@functools.cache
def _load_packaged() -> ApiSchema:
    text = importlib.resources.files("pvetool.emulator").joinpath(DATA_FILE).read_text("utf-8")
    data = json.loads(text)
    return ApiSchema(data["endpoints"], data.get("provenance"))
