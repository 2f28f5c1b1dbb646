"""Who may open ``/ws``, ``/agent`` and ``/metrics``: the token, the browser login, the Origin check.

* **Token** (``vlogger serve --token T``): non-browser clients send ``Authorization: Bearer T``
  (compared in constant time). A browser cannot put a header on a WebSocket, so it logs in once:
  ``GET /login?code=C`` with the one-time code the server prints (or ``/login?token=T``) sets an
  ``HttpOnly``, ``SameSite=Strict`` cookie derived from the token, which the page's ``/ws`` then
  carries. A used code is replaced by a new one (logged).
* **Origin**: a browser's WebSocket carries the page's ``Origin``. It must be the server's own
  page at a loopback name or the bind address (with the server's port), or one listed in
  ``ServerConfig.allowed_origins``. The request's ``Host`` header is never used for this (it is
  the attacker's own name in a DNS-rebinding attack). Clients that send no ``Origin`` are not
  browsers and pass this check (the token still applies).
"""

from __future__ import annotations

import hashlib
import hmac
import http.cookies
import ipaddress
import secrets
import urllib.parse
from typing import Any

from websockets.http11 import Request

__all__ = ["COOKIE", "Access", "is_loopback", "origins_for"]

#: Name of the login cookie.
COOKIE = "vlogger_auth"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_WILDCARD = ("", "0.0.0.0", "::", "[::]")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, possibly ``::ffff:127.0.0.1`` or with a ``%zone``) is loopback."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def origins_for(
    host: str, port: int, extra: list[str] | None = None, interfaces: list[str] | None = None
) -> set[str]:
    """The origins a browser page of this server has: loopback names and the bind address (every
    interface address when bound to all), http and https, with ``port`` (and without it for the
    scheme's default port), plus ``extra``."""
    names = set(_LOOPBACK_NAMES)
    if host in _WILDCARD:
        names.update(_host_for_url(a) for a in interfaces or [])
    else:
        names.add(_host_for_url(host))
    out = {o.rstrip("/").lower() for o in extra or []}
    for name in names:
        for scheme, default in (("http", 80), ("https", 443)):
            out.add(f"{scheme}://{name.lower()}:{port}")
            if port == default:
                out.add(f"{scheme}://{name.lower()}")
    return out


def _interface_addresses() -> list[str]:
    """This machine's addresses (what a browser elsewhere reaches a 0.0.0.0-bound server at)."""
    import socket

    import aioice.ice

    addresses = list(aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True))
    addresses.append(socket.gethostname())
    return addresses


class Access:
    """The access rules of one server; :meth:`bind` once its port is known."""

    def __init__(self, token: str | None, allowed_origins: list[str], host: str) -> None:
        self.token = token or None
        self.host = host
        self._extra = list(allowed_origins)
        self._any_origin = "*" in self._extra
        self._origins: set[str] = set()
        self._cookie = (
            hmac.new(self.token.encode(), b"vlogger-login-cookie-v1", hashlib.sha256).hexdigest()
            if self.token
            else ""
        )
        self._code = secrets.token_urlsafe(18)

    def bind(self, port: int) -> None:
        """Compute the allowed origins for the listening port."""
        interfaces = _interface_addresses() if self.host in _WILDCARD else []
        self._origins = origins_for(self.host, port, [o for o in self._extra if o != "*"], interfaces)

    @property
    def login_code(self) -> str:
        """The current one-time login code (replaced once used)."""
        return self._code

    # ---- checks --------------------------------------------------------------------------------
    def origin_ok(self, request: Request) -> bool:
        """No ``Origin`` (not a browser), an allowed one, or ``"*"`` configured."""
        origin = request.headers.get("Origin")
        if origin is None or self._any_origin:
            return True
        return origin.rstrip("/").lower() in self._origins

    def bearer_ok(self, request: Request) -> bool:
        """``Authorization: Bearer <token>`` with the server's token (or no token configured)."""
        if not self.token:
            return True
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    def cookie_ok(self, request: Request) -> bool:
        """The login cookie with the value derived from the server's token."""
        if not self.token:
            return True
        jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        for header in request.headers.get_all("Cookie"):
            try:
                jar.load(header)
            except http.cookies.CookieError:
                continue
        morsel = jar.get(COOKIE)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self._cookie.encode())

    def authorized(self, request: Request) -> bool:
        """A client of ``/ws`` or ``/metrics``: the bearer token or the login cookie."""
        return self.bearer_ok(request) or self.cookie_ok(request)

    # ---- login ---------------------------------------------------------------------------------
    def login(self, query: str) -> tuple[bool, str]:
        """Handle ``/login?code=C`` (one-time) or ``/login?token=T``: ``(ok, message)``. A used
        code is replaced by a new one."""
        if not self.token:
            return False, "this server has no token: open / directly"
        params = urllib.parse.parse_qs(query, max_num_fields=4)
        code = (params.get("code") or [""])[0]
        token = (params.get("token") or [""])[0]
        if code and hmac.compare_digest(code.encode(), self._code.encode()):
            self._code = secrets.token_urlsafe(18)
            return True, "logged in with the one-time link"
        if token and hmac.compare_digest(token.encode(), self.token.encode()):
            return True, "logged in with the token"
        return False, (
            "this login link is wrong or was used already: use the newest link the server printed, "
            "or /login?token=<the server's token>"
        )

    def cookie_header(self) -> str:
        """``Set-Cookie`` value of a successful login (browser session, this server only)."""
        return f"{COOKIE}={self._cookie}; Path=/; HttpOnly; SameSite=Strict"

    def describe(self) -> dict[str, Any]:
        """What the page may know: whether a login is needed (never the token)."""
        return {"token_required": bool(self.token)}
