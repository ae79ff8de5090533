"""``asyncfaults serve``: Toxiproxy's HTTP API over the embedded engine.

Any Toxiproxy client (the Go, Ruby or Python ones, testcontainers, our own
``Faults`` over HTTP) can drive the engine as if it were Toxiproxy 2.12: same
endpoints, status codes, JSON shapes, defaults and ``{"error", "status"}``
bodies. The API and the proxies share ONE event loop, made by
``_loop.new_event_loop`` so toxic timers keep their word; handlers call the
``FaultCore`` directly, with no thread hop, which keeps adding and removing a
toxic over HTTP as cheap as Toxiproxy makes it.

Where we differ from Toxiproxy it is on purpose, to be stricter or clearer:
bad input is refused with a message naming the field, the value and what is
allowed (Toxiproxy often accepts it, or answers with a Go decoder error), and
nothing a client sends can produce a 500 with a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .._address import parse_address
from .._engine._core import FaultCore
from .._engine._models import ProxyInfo, ProxyStats
from .._exceptions import (
    AlreadyExistsError,
    AsyncFaultsError,
    InvalidError,
    in_toxiproxy_words,
)
from .._toxics import TOXIC_TYPES
from .._toxics._spec import (
    ConnectionSelector,
    ToxicSpec,
    attribute_mapping,
    check_name,
    check_stream,
    check_toxicity,
    check_type,
    make_toxic,
)
from .._values import BODY_MAX_BYTES
from .._version import __version__
from ._json import STATS_HEADER, load_json, stats_to_json
from ._openapi import OPENAPI

TOXIPROXY_VERSION: Final = "2.12.0"
"""The Toxiproxy release whose API this server speaks (``GET /version``)."""
DEFAULT_LISTEN: Final = "127.0.0.1:0"
"""Where a proxy listens when the client does not say: loopback, a free port."""
_INVALID_STREAM: Final = "stream was invalid, can be either upstream or downstream"
_INVALID_TYPE: Final = "invalid toxic type"


logger = logging.getLogger("pytest_asyncfaults.serve")


# -- errors -----------------------------------------------------------------------------


def _error(
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    detail: str | None = None,
    **extra: object,
) -> JSONResponse:
    """Toxiproxy's error body, ``{"error", "status"}``; ``detail`` (ours) says more."""
    body: dict[str, object] = {"error": message, "status": status, **extra}
    if detail is not None and detail != message:
        body["detail"] = detail
    return JSONResponse(body, status, headers=headers)


def _error_of(exc: AsyncFaultsError, **extra: object) -> JSONResponse:
    """An error of ours as Toxiproxy words it, where it has words for it, ours in ``detail``."""
    if exc.toxiproxy is not None:
        return _error(exc.status, exc.toxiproxy, None, detail=str(exc), **extra)
    return _error(exc.status, str(exc), None, detail=None, **extra)


async def _read_bounded_body(request: Request) -> bytes | Response:
    """The body, read up to ``BODY_MAX_BYTES``; past that, a 413 before the rest arrives.

    A declared ``Content-Length`` over the limit is refused without reading a
    byte; a body that streams past it is refused as soon as it does, and the
    connection is closed rather than drained.
    """
    too_large = _error(
        413,
        f"bad request body: larger than {BODY_MAX_BYTES} bytes, the limit of this server",
        headers={"connection": "close"},
    )
    declared = request.headers.get("content-length")
    if declared is not None and (
        not declared.isascii()
        or not declared.isdigit()
        or len(declared) > 12
        or int(declared) > BODY_MAX_BYTES
    ):
        return too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_MAX_BYTES:
            return too_large
        chunks.append(chunk)
    return b"".join(chunks)


Endpoint = Callable[[Request], Awaitable[Response]]


def _guarded(endpoint: Endpoint, lock: asyncio.Lock) -> Endpoint:
    """One request at a time, and every failure as a JSON error body.

    The lock keeps a request that awaits (a proxy binding its port) from
    interleaving with another that changes the same proxy, as Toxiproxy's
    mutexes do. Anything unexpected is logged with its traceback on stderr and
    answered with a plain 500, never with the traceback.
    """

    @functools.wraps(endpoint)
    async def run(request: Request) -> Response:
        try:
            # Read outside the lock: a slow client holds nothing.
            body = await _read_bounded_body(request)
        except Exception:  # the client went away mid-body
            return _error(400, "bad request body: it could not be read")
        if isinstance(body, Response):
            return body
        request.state.body = body
        async with lock:
            try:
                return await endpoint(request)
            except AsyncFaultsError as exc:
                return _error_of(exc)
            except Exception:
                logger.exception("internal error in %s %s", request.method, request.url.path)
                return _error(500, "internal error: the server's log (stderr) has the details")

    return run


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods get a JSON body too, not Starlette's text."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return _error(exc.status_code, message, headers=exc.headers)


@final
class _RefuseBrowsers:
    """Toxiproxy's guard: a web page must not drive a local fault proxy (CSRF)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for key, value in scope["headers"]:
                if key == b"user-agent" and value.startswith(b"Mozilla/"):
                    response = PlainTextResponse("User agent not allowed\n", status_code=403)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


# -- request bodies -------------------------------------------------------------------------


async def _read_json(request: Request) -> object:
    raw: bytes = request.state.body
    if not raw.strip():
        raise InvalidError("bad request body: it is empty, expected JSON")
    return load_json(raw, "bad request body", strict=True)


async def _read_object(request: Request, shape: str) -> dict[str, object]:
    value = await _read_json(request)
    if not isinstance(value, dict):
        raise InvalidError(f"bad request body: expected a JSON object {shape}")
    return value


def _missing(value: object) -> bool:
    """JSON null and an absent key mean the same, as in Toxiproxy's Go decoder."""
    return value is None


def _address(field_name: str, value: object) -> str:
    parse_address(field_name, value)
    assert isinstance(value, str)
    return value


def _enabled(value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidError(f"enabled={value!r} is not valid: expected true or false")
    return value


def _milliseconds(field_name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidError(
            f"{field_name}={value!r} is not valid: expected an integer >= 0 (milliseconds)"
        )
    return value


def _attributes(toxic_type: str, value: object) -> Mapping[str, object] | None:
    """JSON null is no attributes, as in Toxiproxy; what they are worth is checked later,
    by the toxic's one validator (an update's are merged first)."""
    return None if _missing(value) else attribute_mapping(toxic_type, value)


_PROXY_SHAPE: Final = '{"name", "upstream", "listen"?, "enabled"?}'


def _new_proxy(body: dict[str, object], where: str = "") -> tuple[str, str, str, bool]:
    """Name, upstream, listen, enabled of a proxy to create, with Toxiproxy's defaults."""
    for key in ("name", "upstream"):
        if _missing(body.get(key)) or body.get(key) == "":
            raise InvalidError(f"missing required field: {key}{where}")
    name = check_name("name", body["name"])
    upstream = _address("upstream", body["upstream"])
    listen_value = body.get("listen")
    listen = DEFAULT_LISTEN if _missing(listen_value) else _address("listen", listen_value)
    enabled_value = body.get("enabled")
    enabled = True if _missing(enabled_value) else _enabled(enabled_value)
    return name, upstream, listen, enabled


# -- the API --------------------------------------------------------------------------------


@final
class _Api:
    """The endpoints, bound to one core; all run on the core's loop."""

    def __init__(self, core: FaultCore) -> None:
        self.core = core

    async def openapi(self, request: Request) -> Response:
        """Our extension: this API described (OpenAPI 3.1), for clients and fuzzers."""
        return JSONResponse(OPENAPI)

    async def version(self, request: Request) -> Response:
        # A client that parses the version sees Toxiproxy's; ours is alongside.
        return JSONResponse({"version": TOXIPROXY_VERSION, "asyncfaults": __version__})

    async def reset(self, request: Request) -> Response:
        await self.core.reset()
        return Response(status_code=204)

    async def proxy_index(self, request: Request) -> Response:
        proxies = await self.core.proxies()
        return JSONResponse({name: info.to_json() for name, info in proxies.items()})

    async def proxy_create(self, request: Request) -> Response:
        body = await _read_object(request, _PROXY_SHAPE)
        name, upstream, listen, enabled = _new_proxy(body)
        info = await self.core.create_proxy(name, upstream, listen, enabled)
        return JSONResponse(info.to_json(), status_code=201)

    async def populate(self, request: Request) -> Response:
        """Create or replace many proxies; identical ones are kept as they are.

        Every entry is checked before anything changes. Any error body has
        Toxiproxy's ``proxies`` field too: ``null`` when the request was refused
        before a change, else the proxies already applied when one of them
        failed to listen.
        """
        try:
            return await self._populate(request)
        except AsyncFaultsError as exc:
            return _error_of(exc, proxies=None)

    async def _populate(self, request: Request) -> Response:
        body = await _read_json(request)
        if not isinstance(body, list):
            raise InvalidError(f"bad request body: expected a JSON array of {_PROXY_SHAPE}")
        wanted: list[tuple[str, str, str, bool]] = []
        seen: dict[str, int] = {}
        for number, entry in enumerate(body, 1):
            where = f" at proxy {number}"
            if not isinstance(entry, dict):
                raise InvalidError(
                    f"bad request body: expected a JSON object {_PROXY_SHAPE}{where}"
                )
            try:
                proxy = _new_proxy(entry, where)
                self.core.check_listen(proxy[2])
            except InvalidError as exc:
                if str(exc).startswith("missing required field"):
                    raise
                raise InvalidError(f"proxy {number}: {exc}") from None
            if proxy[0] in seen:
                raise InvalidError(
                    f"proxy {number}: name={proxy[0]!r} is not valid: "
                    f"proxy {seen[proxy[0]]} of this request has the same name"
                )
            seen[proxy[0]] = number
            wanted.append(proxy)
        applied: list[ProxyInfo] = []
        for name, upstream, listen, enabled in wanted:
            existing = (await self.core.proxies()).get(name)
            if existing is not None:
                if _same_addresses(existing, listen, upstream):
                    applied.append(existing)
                    continue
                await self.core.delete_proxy(name)
            try:
                applied.append(await self.core.create_proxy(name, upstream, listen, enabled))
            except AsyncFaultsError as exc:
                return _error_of(exc, proxies=[info.to_json() for info in applied] or None)
        return JSONResponse({"proxies": [info.to_json() for info in applied]}, status_code=201)

    async def proxy_show(self, request: Request) -> Response:
        info = await self.core.proxy_info(request.path_params["proxy"])
        return JSONResponse(info.to_json())

    async def proxy_update(self, request: Request) -> Response:
        """Change listen, upstream or enabled; what the body leaves out stays."""
        name = request.path_params["proxy"]
        await self.core.proxy_info(name)  # 404 before looking at the body, as Toxiproxy
        body = await _read_object(request, '{"listen"?, "upstream"?, "enabled"?}')
        listen, upstream, enabled = body.get("listen"), body.get("upstream"), body.get("enabled")
        info = await self.core.update_proxy(
            name,
            listen=None if _missing(listen) else _address("listen", listen),
            upstream=None if _missing(upstream) else _address("upstream", upstream),
            enabled=None if _missing(enabled) else _enabled(enabled),
        )
        return JSONResponse(info.to_json())

    async def proxy_delete(self, request: Request) -> Response:
        await self.core.delete_proxy(request.path_params["proxy"])
        return Response(status_code=204)

    async def proxy_stats(self, request: Request) -> Response:
        """Our extension: the proxy's counters, for tests that assert on traffic."""
        return JSONResponse(stats_to_json(await self.core.stats(request.path_params["proxy"])))

    async def proxy_events(self, request: Request) -> Response:
        """Our extension: what the proxy's protocol toxics saw and did, oldest first."""
        events = await self.core.protocol_events(request.path_params["proxy"])
        return JSONResponse([event.to_json() for event in events])

    async def toxic_index(self, request: Request) -> Response:
        toxics = await self.core.toxics(request.path_params["proxy"])
        return JSONResponse([spec.to_json() for spec in toxics])

    async def toxic_create(self, request: Request) -> Response:
        """Add a toxic; 200 (not 201) with the toxic, as Toxiproxy answers.

        Checked in Toxiproxy's order (stream, type, name taken, then the
        rest), so a client sees the same status for the same mistake.
        """
        proxy = request.path_params["proxy"]
        existing = await self.core.toxics(proxy)  # 404 first
        body = await _read_object(
            request, '{"type", "name"?, "stream"?, "toxicity"?, "attributes"?}'
        )
        stream_value = body.get("stream")
        try:
            stream = "downstream" if _missing(stream_value) else check_stream(stream_value)
        except InvalidError as exc:
            raise in_toxiproxy_words(exc, _INVALID_STREAM) from None
        type_value = body.get("type")
        if _missing(type_value) or type_value == "":
            raise in_toxiproxy_words(
                InvalidError(f"missing required field: type (one of {', '.join(TOXIC_TYPES)})"),
                _INVALID_TYPE,
            )
        try:
            toxic_type = check_type(type_value)
        except InvalidError as exc:
            raise in_toxiproxy_words(exc, _INVALID_TYPE) from None
        name_value = body.get("name")
        name = (
            f"{toxic_type}_{stream}"
            if _missing(name_value) or name_value == ""
            else check_name("name", name_value)
        )
        if any(spec.name == name for spec in existing):
            raise in_toxiproxy_words(
                AlreadyExistsError(f"toxic {name!r} already exists on proxy {proxy!r}"),
                "toxic already exists",
            )
        toxicity = body.get("toxicity")
        start_after = body.get("start_after")
        duration = body.get("duration")
        spec = make_toxic(
            toxic_type,
            name=name,
            stream=stream,
            toxicity=1.0 if _missing(toxicity) else check_toxicity(toxicity),
            attributes=_attributes(toxic_type, body.get("attributes")),
            connections=body.get("connections"),
            start_after=0 if _missing(start_after) else _milliseconds("start_after", start_after),
            duration=None if _missing(duration) else _milliseconds("duration", duration),
        )
        added, stats = await self.core.open_toxic(proxy, spec, counted=_counted(request))
        return JSONResponse(added.to_json(), headers=_stats_header(stats))

    async def toxic_show(self, request: Request) -> Response:
        params = request.path_params
        spec = await self.core.toxic(params["proxy"], params["toxic"])
        return JSONResponse(spec.to_json())

    async def toxic_update(self, request: Request) -> Response:
        """Merge attributes and toxicity; name, type and stream stay as they are.

        Toxiproxy ignores the other fields of the body. We do too, except for
        our own ``connections``, ``start_after`` and ``duration``: the engine
        cannot change those on a live toxic, and silently keeping the old
        value would fake a fault the client did not get.
        """
        params = request.path_params
        current = await self.core.toxic(params["proxy"], params["toxic"])  # 404 first
        body = await _read_object(request, '{"attributes"?, "toxicity"?}')
        _refuse_fixed_changes(current, body)
        toxicity = body.get("toxicity")
        spec = await self.core.update_toxic(
            params["proxy"],
            params["toxic"],
            attributes=_attributes(current.type, body.get("attributes")),
            toxicity=None if _missing(toxicity) else check_toxicity(toxicity),
        )
        return JSONResponse(spec.to_json())

    async def toxic_delete(self, request: Request) -> Response:
        params = request.path_params
        if not _counted(request):
            await self.core.remove_toxic(params["proxy"], params["toxic"])
            return Response(status_code=204)
        await self.core.toxic(params["proxy"], params["toxic"])  # 404 as without the header
        stats = await self.core.close_toxic(params["proxy"], params["toxic"], counted=True)
        return Response(status_code=204, headers=_stats_header(stats))


def _counted(request: Request) -> bool:
    """The client asks for the proxy's counters with the toxic (``STATS_HEADER``)."""
    return request.headers.get(STATS_HEADER) == "1"


def _stats_header(stats: ProxyStats | None) -> dict[str, str] | None:
    if stats is None:
        return None
    return {STATS_HEADER: json.dumps(stats_to_json(stats), separators=(",", ":"))}


def _same_addresses(existing: ProxyInfo, listen: str, upstream: str) -> bool:
    """Toxiproxy's test for "identical" in populate: same listen and upstream.

    ``existing.listen`` holds the port actually bound, so a request for port 0
    never matches and the proxy is replaced, as in Toxiproxy.
    """
    return parse_address("listen", existing.listen) == parse_address(
        "listen", listen
    ) and parse_address("upstream", existing.upstream) == parse_address("upstream", upstream)


def _refuse_fixed_changes(current: ToxicSpec, body: Mapping[str, object]) -> None:
    for key, now in (
        ("connections", None if current.connections is None else str(current.connections)),
        ("start_after", current.start_after),
        ("duration", current.duration),
    ):
        if key not in body:
            continue
        value = body[key]
        if key == "connections":
            wanted: object = None if value is None else str(ConnectionSelector.parse(value))
        elif key == "start_after":
            wanted = 0 if value is None else value
        else:
            wanted = value
        if wanted != now or isinstance(value, bool):
            raise InvalidError(
                f"{key}={value!r} is not valid here: {key} cannot be changed on an existing "
                f"toxic (it is {now!r}); remove the toxic and add it again"
            )


def toxiproxy_api(core: FaultCore) -> Starlette:
    """Toxiproxy 2.12's HTTP API over ``core``; serve it on the core's loop."""
    api = _Api(core)
    lock = asyncio.Lock()

    def route(path: str, **by_method: Endpoint) -> Route:
        """One route per path, so a wrong method's 405 lists every allowed one."""
        guarded = {method: _guarded(endpoint, lock) for method, endpoint in by_method.items()}
        if "GET" in guarded:
            guarded["HEAD"] = guarded["GET"]

        async def dispatch(request: Request) -> Response:
            return await guarded[request.method](request)

        return Route(path, dispatch, methods=list(guarded))

    proxy, toxic = "/proxies/{proxy}", "/proxies/{proxy}/toxics/{toxic}"
    app = Starlette(
        routes=[
            route("/version", GET=api.version),
            route("/openapi.json", GET=api.openapi),
            route("/reset", POST=api.reset),
            route("/proxies", GET=api.proxy_index, POST=api.proxy_create),
            route("/populate", POST=api.populate),
            route(
                proxy,
                GET=api.proxy_show,
                POST=api.proxy_update,
                PATCH=api.proxy_update,
                DELETE=api.proxy_delete,
            ),
            route(f"{proxy}/stats", GET=api.proxy_stats),
            route(f"{proxy}/events", GET=api.proxy_events),
            route(f"{proxy}/toxics", GET=api.toxic_index, POST=api.toxic_create),
            route(
                toxic,
                GET=api.toxic_show,
                POST=api.toxic_update,
                PATCH=api.toxic_update,
                DELETE=api.toxic_delete,
            ),
        ],
        middleware=[Middleware(_RefuseBrowsers)],
        exception_handlers={HTTPException: _http_error},
    )
    # As Toxiproxy's router: "/proxies/" is not "/proxies" (no redirect to follow).
    app.router.redirect_slashes = False
    return app


# -- asyncfaults serve ------------------------------------------------------------------------
