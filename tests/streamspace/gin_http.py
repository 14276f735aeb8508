"""What gin (v1.9.1, StreamSpace's ``api/go.mod``) and StreamSpace's global middleware do to every
request before a handler runs, for the control-plane stand-in.

* :func:`client_ip`: gin's ``Context.ClientIP`` with the engine as ``gin.New()`` leaves it
  (``api/cmd/main.go`` never calls ``SetTrustedProxies``): every proxy is trusted,
  ``ForwardedByClientIP`` is on and ``RemoteIPHeaders`` is ``X-Forwarded-For, X-Real-IP``.
* :func:`invalid_input`: ``api/internal/middleware/inputvalidation.go``
  ``InputValidator.Middleware`` (path traversal, and every query value checked for "SQL",
  "command" and "LDAP" injection patterns).
* :func:`method_not_allowed`: ``methodrestriction.go`` ``AllowedHTTPMethods``.
* :func:`should_gzip`: ``compression.go`` ``GzipWithExclusions``/``shouldCompress`` as
  ``setupRoutes`` configures it.
* :func:`cache_control`: ``api/internal/cache/middleware.go`` ``CacheControl(5 * time.Minute)``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

from tests.streamspace.gojson import GoMap

# --- ClientIP ------------------------------------------------------------------------------------


def go_parse_ip(text: str) -> bool:
    """Whether ``net.ParseIP`` accepts ``text`` (no zone, no brackets, no leading zeros)."""
    if not text or "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _validate_header(header: str) -> str | None:
    """``Engine.validateHeader`` with every proxy trusted: walking right to left, every item
    must parse as an IP; the leftmost one is the client. An unparsable item voids the header."""
    if not header:
        return None
    items = header.split(",")
    for index in range(len(items) - 1, -1, -1):
        candidate = items[index].strip()
        if not go_parse_ip(candidate):
            return None
        if index == 0:
            return candidate
    return None


def normalize_peer_ip(peer: str) -> str:
    """``net.ParseIP(RemoteIP).String()``: IPv4-mapped IPv6 addresses print as IPv4."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def client_ip(headers: Mapping[str, str], peer_ip: str) -> str:
    """gin's ``ClientIP``: ``X-Forwarded-For``'s first address (all proxies trusted), else
    ``X-Real-IP``, else the peer's address. Only the first header line of each name is read."""
    for name in ("X-Forwarded-For", "X-Real-IP"):
        found = _validate_header(headers.get(name, ""))
        if found is not None:
            return found
    return normalize_peer_ip(peer_ip)


# --- InputValidator.Middleware ------------------------------------------------------------------

_PATH_TRAVERSAL = ("../", "..\\", "/..", "\\..", "%2e%2e", "%252e%252e", "..%2f", "..%5c")
_S = r"[\t\n\f\r ]"  # Go's \s
_SQL_PATTERNS = [
    re.compile(p)
    for p in (
        rf"(?i)(union{_S}+select)",
        rf"(?i)(select{_S}+.*{_S}+from)",
        rf"(?i)(insert{_S}+into)",
        rf"(?i)(delete{_S}+from)",
        rf"(?i)(drop{_S}+table)",
        rf"(?i)(update{_S}+.*{_S}+set)",
        rf"(?i)(exec{_S}*\()",
        rf"(?i)(execute{_S}*\()",
        rf"(?i)(script{_S}*>)",
        r"(?i)(javascript:)",
        rf"(?i)(onerror{_S}*=)",
        rf"(?i)(onload{_S}*=)",
        r"--",
        r"#",
        r"/\*",
    )
]
_COMMAND_PATTERNS = [re.compile(p) for p in (r"[;&|]", r"`", r"\$\(")]
_LDAP_CHARS = ("*", "(", ")", "\\", "/", "\x00")


def _validate_input(value: str) -> str | None:
    """``validateInput``: the error text, or None."""
    if len(value.encode("utf-8", "surrogateescape")) > 10000:
        return "value too long (max 10000 characters)"
    if "\x00" in value:
        return "null byte detected"
    if any(p.search(value) for p in _SQL_PATTERNS):
        return "potential SQL injection detected"
    if any(p.search(value) for p in _COMMAND_PATTERNS):
        return "potential command injection detected"
    if sum(1 for c in _LDAP_CHARS if c in value) >= 2:
        return "potential LDAP injection detected"
    return None


def invalid_input(path: str, query: Iterable[tuple[str, str]]) -> GoMap | None:
    """``InputValidator.Middleware``: the 400 body, or None when the request may go on."""
    lowered = path.lower()
    if any(p in lowered for p in _PATH_TRAVERSAL):
        return GoMap(error="Invalid path", message="path traversal attempt detected")
    if "\x00" in path:
        return GoMap(error="Invalid path", message="null byte detected in path")
    for key, value in query:
        problem = _validate_input(value)
        if problem is not None:
            return GoMap(error="Invalid query parameter", message=f"Parameter '{key}': {problem}")
    return None


# --- AllowedHTTPMethods, CORS, gzip, Cache-Control ----------------------------------------------

ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")


def method_not_allowed(method: str) -> GoMap | None:
    """``AllowedHTTPMethods``: the 405 body for any other method."""
    if method in ALLOWED_METHODS:
        return None
    return GoMap(
        error="Method not allowed",
        message=f"The HTTP method {method} is not allowed for this resource.",
        allowed_methods=list(ALLOWED_METHODS),
    )


_GZIP_EXCLUDED = ("/api/v1/ws/", "/api/v1/auth/", "/api/v1/metrics")


def should_gzip(path: str, headers: Mapping[str, str]) -> bool:
    """``GzipWithExclusions(BestSpeed, ...)`` as ``setupRoutes`` sets it up."""
    if path.startswith(_GZIP_EXCLUDED):
        return False
    if "gzip" not in headers.get("Accept-Encoding", ""):
        return False
    if headers.get("Upgrade", "") == "websocket":
        return False
    return headers.get("Accept", "") != "text/event-stream"


_NO_CACHE = (
    "/api/v1/auth/",
    "/api/v1/users/me",
    "/api/v1/sessions/",
    "/api/v1/applications/user",
    "/api/v1/dashboard/me",
    "/api/v1/notifications",
    "/api/v1/preferences",
)


def cache_control(method: str, path: str) -> str:
    """``cache.CacheControl(5 * time.Minute)``: the ``Cache-Control`` header it sets."""
    if method == "GET" and not path.startswith(_NO_CACHE):
        return "public, max-age=300"
    return "no-store, no-cache, must-revalidate"
