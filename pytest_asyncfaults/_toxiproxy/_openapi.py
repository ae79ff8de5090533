"""Toxiproxy 2.12's HTTP API, as ``asyncfaults serve`` speaks it, described in OpenAPI 3.1.

``serve`` publishes it at ``GET /openapi.json``: a client generator, an API
explorer or a fuzzer reads the endpoints, the bodies and every status an
endpoint answers with from the server itself. The test suite's fuzzer builds
its requests from this document, so a path or a field added to the API and
left out here is found by the first run that misses it.
"""

from __future__ import annotations

from typing import Any, Final

from .._toxics import PROTOCOL_TOXICS, TOXIC_TYPES
from .._values import BODY_MAX_BYTES, INT64_MAX, NAME_MAX
from .._version import __version__

_NAME: Final = {"type": "string", "pattern": r"^[A-Za-z0-9_.~-]+$", "maxLength": NAME_MAX}
_ADDRESS: Final = {"type": "string", "description": "host:port, or [v6]:port", "maxLength": 300}
_MS: Final = {"type": "integer", "minimum": 0, "maximum": INT64_MAX}
_ATTRIBUTE: Final = {
    "type": ["integer", "string"],
    "description": "each toxic's attributes in its units: whole numbers 0 to int64, or text",
}

_ERROR: Final = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {
        "error": {"type": "string", "description": "Toxiproxy's words, where it has some"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "ours: the field, the value, what is allowed"},
        "proxies": {"description": "POST /populate only: the proxies applied before a failure"},
    },
}
_TOXIC: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "name": _NAME,
        "type": {"type": "string", "enum": list(TOXIC_TYPES)},
        "stream": {"type": "string", "enum": ["upstream", "downstream"]},
        "toxicity": {"type": "number", "minimum": 0, "maximum": 1},
        "attributes": {"type": "object", "additionalProperties": _ATTRIBUTE},
        "connections": {
            "type": ["string", "integer"],
            "description": 'ours: which connections, "3", "3+", "2-4", "1,5+"',
        },
        "start_after": _MS,
        "duration": _MS,
    },
}
_ATTRIBUTES_OF: Final = {
    name: {
        "type": "object",
        "properties": {key: kind.schema() for key, kind in stage.attribute_kinds.items()},
        "additionalProperties": False,
    }
    for name, stage in TOXIC_TYPES.items()
}
"""Each toxic type's attributes, from the kinds it declares (``Stage.attribute_kinds``):
the one declaration the validator checks against is the one described here."""
_NEW_TOXIC: Final = {
    "oneOf": [
        {
            **_TOXIC,
            "title": name,
            "description": (
                "a protocol toxic: the embedded engine only (a real Toxiproxy refuses it)"
                if name in PROTOCOL_TOXICS
                else "Toxiproxy's toxic"
            ),
            "required": ["type"],
            "properties": {
                **_TOXIC["properties"],
                "type": {"type": "string", "enum": [name]},
                "attributes": attributes,
            },
        }
        for name, attributes in _ATTRIBUTES_OF.items()
    ]
}
_TOXIC_UPDATE: Final = {
    "type": "object",
    "properties": {
        "attributes": {
            "description": "some of the attributes of the toxic's type (the rest are kept)",
            "anyOf": list(_ATTRIBUTES_OF.values()),
        },
        "toxicity": {"type": "number", "minimum": 0, "maximum": 1},
    },
}
_EVENT: Final = {
    "type": "object",
    "properties": {
        "connection": {"type": "integer", "description": "the connection's number, from 1"},
        "at": {"type": "number", "description": "the engine's monotonic clock, in seconds"},
        "text": {"type": "string"},
        "injected": {"type": "boolean", "description": "what a toxic did, not what it read"},
        "repeats": {"type": "integer"},
        "until": {"type": "number"},
    },
}
_PROXY: Final = {
    "type": "object",
    "properties": {
        "name": _NAME,
        "listen": _ADDRESS,
        "upstream": _ADDRESS,
        "enabled": {"type": "boolean"},
        "toxics": {"type": "array", "items": _TOXIC},
    },
}
_NEW_PROXY: Final = {
    "type": "object",
    "required": ["name", "upstream"],
    "properties": {
        "name": _NAME,
        "listen": _ADDRESS,
        "upstream": _ADDRESS,
        "enabled": {"type": "boolean"},
    },
}
_PROXY_UPDATE: Final = {
    "type": "object",
    "properties": {"listen": _ADDRESS, "upstream": _ADDRESS, "enabled": {"type": "boolean"}},
}


def _json(schema: object) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _answers(ok: int, schema: object | None, *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        str(ok): {"description": "done", **({} if schema is None else _json(schema))}
    }
    for status in errors:
        out[str(status)] = {"description": "refused", **_json(_ERROR)}
    return out


def _body(schema: object) -> dict[str, Any]:
    return {"required": True, **_json(schema)}


_P: Final = {"name": "proxy", "in": "path", "required": True, "schema": _NAME}
_T: Final = {"name": "toxic", "in": "path", "required": True, "schema": _NAME}

OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "asyncfaults serve: Toxiproxy 2.12's HTTP API over the embedded engine",
        "version": __version__,
        "description": (
            "Toxiproxy's endpoints, statuses and JSON shapes; error bodies carry Toxiproxy's "
            "words in 'error' and ours in 'detail'. Request bodies are limited to "
            f"{BODY_MAX_BYTES} bytes (413 past that)."
        ),
    },
    "paths": {
        "/version": {"get": {"responses": _answers(200, {"type": "object"})}},
        "/openapi.json": {"get": {"responses": _answers(200, {"type": "object"})}},
        "/reset": {"post": {"responses": _answers(204, None)}},
        "/proxies": {
            "get": {"responses": _answers(200, {"type": "object", "additionalProperties": _PROXY})},
            "post": {
                "requestBody": _body(_NEW_PROXY),
                "responses": _answers(201, _PROXY, 400, 409, 413, 500),
            },
        },
        "/populate": {
            "post": {
                "requestBody": _body({"type": "array", "items": _NEW_PROXY}),
                "responses": _answers(
                    201,
                    {"type": "object", "properties": {"proxies": {"type": "array"}}},
                    400,
                    413,
                    500,
                ),
            }
        },
        "/proxies/{proxy}": {
            "parameters": [_P],
            "get": {"responses": _answers(200, _PROXY, 404)},
            "post": {
                "requestBody": _body(_PROXY_UPDATE),
                "responses": _answers(200, _PROXY, 400, 404, 413, 500),
            },
            "patch": {
                "requestBody": _body(_PROXY_UPDATE),
                "responses": _answers(200, _PROXY, 400, 404, 413, 500),
            },
            "delete": {"responses": _answers(204, None, 404)},
        },
        "/proxies/{proxy}/stats": {
            "parameters": [_P],
            "get": {"responses": _answers(200, {"type": "object"}, 404)},
        },
        "/proxies/{proxy}/events": {
            "parameters": [_P],
            "get": {
                "description": "what the proxy's protocol toxics read and did, oldest first",
                "responses": _answers(200, {"type": "array", "items": _EVENT}, 404),
            },
        },
        "/proxies/{proxy}/toxics": {
            "parameters": [_P],
            "get": {"responses": _answers(200, {"type": "array", "items": _TOXIC}, 404)},
            "post": {
                "requestBody": _body(_NEW_TOXIC),
                "responses": _answers(200, _TOXIC, 400, 404, 409, 413),
            },
        },
        "/proxies/{proxy}/toxics/{toxic}": {
            "parameters": [_P, _T],
            "get": {"responses": _answers(200, _TOXIC, 404)},
            "post": {
                "requestBody": _body(_TOXIC_UPDATE),
                "responses": _answers(200, _TOXIC, 400, 404, 413),
            },
            "patch": {
                "requestBody": _body(_TOXIC_UPDATE),
                "responses": _answers(200, _TOXIC, 400, 404, 413),
            },
            "delete": {"responses": _answers(204, None, 404)},
        },
    },
}
"""The document ``GET /openapi.json`` answers with."""
