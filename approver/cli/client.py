"""The admin API over HTTPS (:mod:`approver.http.admin` has the routes): one aiohttp session per
command, the bearer token in ``Authorization`` only, TLS verified against the context's CA
(or the system's), never following redirects (a redirect would carry the token elsewhere).

Every method returns the decoded JSON body of a 2xx answer, or raises:

* :class:`Unreachable`: no connection, a TLS failure, a timeout, or an answer that is not the
  API's JSON (exit 1);
* :class:`ApiError`: a non-2xx answer, with its status and the body's ``error`` and
  ``message`` (``{"error", "message"}``, the approver's error shape).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from approver.cli.config import ClientConfigError, Target

AGENTS_PATH = "/api/v1/admin/agents"
AUDIT_PATH = "/api/v1/admin/audit"
#: Largest page the admin API serves (``limit`` 1..500).
MAX_PAGE = 500


class Unreachable(Exception):
    """The approver could not be reached or did not answer as the admin API does."""


class ApiError(Exception):
    """A non-2xx answer: ``status``, ``code`` (the body's ``error``) and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def ssl_context(target: Target) -> ssl.SSLContext:
    """Verify the server against ``target``'s CA file (the system's when None) and its host
    name; no verification at all with ``insecure_skip_tls_verify``.

    Raises:
        ClientConfigError: the CA file cannot be read or holds no certificate.
    """
    if target.insecure_skip_tls_verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(
            cafile=str(target.certificate_authority) if target.certificate_authority else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise ClientConfigError(
            f"certificate-authority {target.certificate_authority}: cannot be used "
            f"({type(exc).__name__})"
        ) from None


class AdminClient:
    """The admin API of the approver at ``target.server``. Use as ``async with``."""

    def __init__(self, target: Target, *, timeout_seconds: float = 30) -> None:
        self._target = target
        self._ssl = ssl_context(target)
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AdminClient:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            headers={"Authorization": f"Bearer {self._target.token}"},
        )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``method path`` with ``query`` and a JSON ``body``; the decoded 2xx body.

        Raises:
            Unreachable: see the module docstring.
            ApiError: a non-2xx answer.
        """
        assert self._session is not None, "use AdminClient as an async context manager"
        url = self._target.server + path
        try:
            async with self._session.request(
                method,
                url,
                params=dict(query or {}),
                json=body,
                ssl=self._ssl,
                allow_redirects=False,
            ) as response:
                text = await response.text()
                status = response.status
        except aiohttp.ClientConnectorCertificateError as exc:
            raise Unreachable(
                f"{self._target.server}: TLS certificate not trusted ({exc.certificate_error})"
            ) from None
        except aiohttp.ClientSSLError as exc:
            raise Unreachable(f"{self._target.server}: TLS failed ({type(exc).__name__})") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unreachable(
                f"{self._target.server}: cannot connect ({type(exc).__name__}: {exc})"
            ) from None
        try:
            decoded = json.loads(text) if text else {}
        except ValueError:
            decoded = None
        if 200 <= status < 300:
            if not isinstance(decoded, dict):
                raise Unreachable(f"{self._target.server}: answer {status} is not a JSON object")
            return decoded
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
            raise ApiError(status, decoded["error"], str(decoded.get("message") or ""))
        raise ApiError(status, "http_error", f"HTTP {status} without the API's error body")

    # --- the routes -----------------------------------------------------------------------

    async def list_agents(
        self, filters: Mapping[str, str], *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Every agent ``filters`` select (``GET /api/v1/admin/agents``, cursors followed),
        oldest first; at most ``limit`` when given."""
        return [agent async for agent in self.iter_agents(filters, limit=limit)]

    async def iter_agents(
        self, filters: Mapping[str, str], *, limit: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The agents of :meth:`list_agents`, a page at a time."""
        cursor: str | None = None
        seen = 0
        while True:
            page = MAX_PAGE if limit is None else min(MAX_PAGE, limit - seen)
            query = {**filters, "limit": str(page)}
            if cursor is not None:
                query["cursor"] = cursor
            answer = await self.request("GET", AGENTS_PATH, query=query)
            for agent in answer.get("agents", []):
                yield agent
                seen += 1
            cursor = answer.get("nextCursor")
            if cursor is None or (limit is not None and seen >= limit):
                return

    async def get_agent(self, agent_id: str) -> dict[str, Any]:
        """``GET .../agents/{agentId}``: the agent. Raises ApiError 404 when unknown."""
        answer = await self.request("GET", f"{AGENTS_PATH}/{quote(agent_id, safe='')}")
        return dict(answer["agent"])

    async def act(self, agent_id: str, action: str) -> dict[str, Any]:
        """``POST .../agents/{agentId}/{action}`` (approve, reject, revoke): the agent after."""
        answer = await self.request("POST", f"{AGENTS_PATH}/{quote(agent_id, safe='')}/{action}")
        return dict(answer["agent"])

    async def delete_agent(self, agent_id: str) -> dict[str, Any]:
        """``DELETE .../agents/{agentId}``: ``{"deleted": id}`` (plus ``controlPlane``)."""
        return await self.request("DELETE", f"{AGENTS_PATH}/{quote(agent_id, safe='')}")

    async def bulk_approve(self, selector: Mapping[str, str]) -> dict[str, Any]:
        """``POST .../agents/bulk-approve``: ``{"approved": [ids], "count": n}``."""
        return await self.request("POST", AGENTS_PATH + "/bulk-approve", body=selector)

    async def list_audit(
        self, filters: Mapping[str, str], *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Stored audit events ``filters`` select (``GET /api/v1/admin/audit``, ``next``
        followed as ``after``/``before`` by ``order``); at most ``limit`` when given."""
        events: list[dict[str, Any]] = []
        key = "before" if filters.get("order") == "desc" else "after"
        following: int | None = None
        while True:
            page = MAX_PAGE if limit is None else min(MAX_PAGE, limit - len(events))
            query = {**filters, "limit": str(page)}
            if following is not None:
                query[key] = str(following)
            answer = await self.request("GET", AUDIT_PATH, query=query)
            events.extend(answer.get("events", []))
            following = answer.get("next")
            if following is None or (limit is not None and len(events) >= limit):
                return events


@asynccontextmanager
async def connect(target: Target) -> AsyncIterator[AdminClient]:
    """An open :class:`AdminClient` for ``target``."""
    async with AdminClient(target) as client:
        yield client
