"""Who may ask the studio anything: the checks every request passes before a route runs.

The studio listens on this machine for the person at it, and every web page that person
opens can send it requests too: a form POST, a ``no-cors`` fetch, an ``<iframe>``, a name
of the page's own that it makes resolve to 127.0.0.1 (DNS rebinding). :class:`Guard`, a
pure ASGI middleware, answers in this order:

1. **Host** (400): only the names the studio was started for, with its port:
   ``127.0.0.1``, ``localhost``, ``[::1]``, the ``--host`` given and each ``--allow-host``.
   A page at ``http://evil.example:8765`` that resolves to 127.0.0.1 is refused here.
2. **Origin** (403), for a request that changes something (POST, PUT, PATCH, DELETE),
   with or without a token: its ``Origin`` must be the studio's own (``http://`` one of
   those names, with the port); without an ``Origin``, ``Sec-Fetch-Site`` must say
   ``same-origin`` (or ``none``: typed by the user). A request with neither header comes
   from no browser; it is let in only with the token in a header (``Authorization: Bearer``
   or ``X-Artwalk-Token``) and no cookie: a page cannot set those headers on a request to
   another origin without a preflight, which the studio does not answer. A script without
   a token sends ``Origin: http://127.0.0.1:PORT`` itself.
3. **Token** (401), when the studio has one: a header, or the page's cookie. A GET that
   carries ``?token=`` gets the cookie and a 303 to the same address without it, so the
   address bar and the history never keep the token.
4. **Body** (413, 415): at most ``--max-upload-mb``, counted as it arrives; JSON, or
   multipart where an image is uploaded.

Every answer, the refusals included, says ``Content-Security-Policy: frame-ancestors 'none'``
(with ``X-Frame-Options: DENY``: the page is never framed), ``X-Content-Type-Options:
nosniff``, ``Cross-Origin-Resource-Policy: same-origin`` (no other page embeds an image or
the video) and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Iterable
from urllib.parse import parse_qsl, quote, urlencode

LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MIN_TOKEN = 16  # characters
TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]+")  # what a cookie carries as it is
HEADERS = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                                 b"form-action 'self'; object-src 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"referrer-policy", b"no-referrer"),
]


def check_token(token: str | None) -> None:
    """A :class:`ValueError` unless ``token`` is None (no token) or one that guards: at least
    :data:`MIN_TOKEN` characters, letters, digits and ``._~+/=-`` only."""
    if token is None:
        return
    if len(token) < MIN_TOKEN:
        raise ValueError(f"the token is {len(token)} characters long: give one of at least {MIN_TOKEN} "
                         "(for example `openssl rand -hex 16`)")
    if not TOKEN.fullmatch(token):
        raise ValueError("the token may hold letters, digits and ._~+/=- only (for example `openssl rand -hex 16`)")


def host_name(host: str) -> str:
    """How ``host`` is written in a Host header: an IPv6 address in brackets, lower case."""
    host = host.strip().lower()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class Guard:
    """Host, origin, token, body size and type, checked before a request reaches a route
    (see the module docstring); ``names``: the Host names besides :data:`LOCAL_NAMES`."""

    def __init__(self, app, token: str | None, max_bytes: int, port: int, names: Iterable[str] = ()) -> None:
        check_token(token)
        self.app, self.token, self.max_bytes, self.port = app, token, max_bytes, port
        self.names = list(dict.fromkeys(host_name(n) for n in (*LOCAL_NAMES, *names)))
        self.hosts = {f"{n}:{port}" for n in self.names} | (set(self.names) if port == 80 else set())
        self.origins = {f"http://{h}" for h in self.hosts}
        self.cookie = f"artwalk_token_{port}"  # one per port: two studios on one machine keep their own

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":  # the studio has none: no page can open one
            return await send({"type": "websocket.close", "code": 1008})
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _with_headers(send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method, path = scope.get("method", "GET"), scope["path"]
        host = headers.get("host", "").strip().lower()
        if host not in self.hosts:
            return await _send_error(send, 400, f"this studio answers to {', '.join(sorted(self.hosts))}, not to "
                                     f"Host '{host[:100]}': open it at one of those (or start it with --allow-host "
                                     "NAME)")
        if method in CHANGES and not self._own(headers):
            return await _send_error(send, 403, f"refused: a request that changes something must come from the "
                                     f"studio's own page (Origin http://{sorted(self.hosts)[0]}); a script sends "
                                     "that Origin header, or its token as Authorization: Bearer TOKEN")
        set_cookie = None
        if self.token is not None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
            given = self._header_token(headers) or self._cookie_token(headers)
            traded = "token" in query and method in ("GET", "HEAD")
            if traded:
                given = query["token"]
            if given is None or not secrets.compare_digest(given.encode(), self.token.encode()):
                return await _send_error(send, 401, "a token is needed: open the page with ?token=TOKEN, or send "
                                         "the header Authorization: Bearer TOKEN")
            if traded:  # the cookie for the token, and the same address without it
                rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
                where = "/" + quote(path, safe="/%:@!$&'()*+,;=-._~").lstrip("/") + (f"?{rest}" if rest else "")
                cookie = f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                return await _send(send, 303, b"", [(b"location", where.encode("latin-1")),
                                                    (b"set-cookie", cookie.encode()),
                                                    (b"cache-control", b"no-store")])
        if method in ("POST", "PUT", "PATCH"):
            refused = self._body_refused(headers, path)
            if refused:
                return await _send_error(send, *refused)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        started = False

        async def sending(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, sending)
        except _TooLarge:
            if not started:
                await _send_error(send, 413, self._too_large())

    def _own(self, headers: dict) -> bool:
        """Whether a request that changes something comes from the studio's own page (or from
        no browser, with the token in a header)."""
        origin = headers.get("origin")
        if origin is not None:
            return origin.strip().lower() in self.origins
        site = headers.get("sec-fetch-site")
        if site is not None:
            return site.strip().lower() in ("same-origin", "none")
        given = self._header_token(headers)
        return (self.token is not None and given is not None and "cookie" not in headers
                and secrets.compare_digest(given.encode(), self.token.encode()))

    def _header_token(self, headers: dict) -> str | None:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return headers.get("x-artwalk-token")

    def _cookie_token(self, headers: dict) -> str | None:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie:
                return value
        return None

    def _body_refused(self, headers: dict, path: str) -> tuple[int, str] | None:
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return 413, self._too_large()
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        has_body = (length is not None and length != "0") or "transfer-encoding" in headers
        parts = path.strip("/").split("/")  # /api/projects/{pid}/keyframes[/{kid}] take an image too
        upload = len(parts) in (4, 5) and parts[:2] == ["api", "projects"] and parts[3] == "keyframes"
        if has_body and kind != "application/json" and not (upload and kind == "multipart/form-data"):
            return 415, ("send the body as Content-Type: application/json"
                         + (" (or multipart/form-data with the image as field 'file')" if upload else ""))
        return None

    def _too_large(self) -> str:
        return f"the request is over the {self.max_bytes // 2**20} MB limit (--max-upload-mb)"


class _TooLarge(Exception):
    pass


def _with_headers(send):
    """``send`` that adds :data:`HEADERS` to every answer."""

    async def sending(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
        await send(message)

    return sending


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send, status: int, detail: str) -> None:
    await _send(send, status, json.dumps({"detail": detail}).encode(), [(b"content-type", b"application/json")])
