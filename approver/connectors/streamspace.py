"""StreamSpace's adapter of the control-plane port, through StreamSpace's own API, unmodified.

Everything here follows StreamSpace's code at commit ``c4fc035`` (repository
``streamspace-dev/streamspace``); the file and function behind each behaviour is named.

Routes used (``api/cmd/main.go`` ``setupRoutes``):

* ``POST /api/v1/agents/register`` with the shared key ``AGENT_BOOTSTRAP_KEY`` in
  ``X-Agent-API-Key``: the agent route StreamSpace's middleware accepts that key on for any agent
  id (``api/internal/middleware/agent_auth.go`` ``RequireAuth``). ``RegisterAgent``
  (``api/internal/handlers/agents.go``) creates the row as pending (202), or answers 200 when it
  is approved with a key, 403 when rejected. Rate-limited per client IP (``agentRateLimit``,
  60/min by default, gin's ``ClientIP`` reads ``X-Forwarded-For``): the agent's address is
  forwarded, so each agent keeps its own budget as when it registered directly.
* Admin routes ``/api/v1/admin/agents...`` (``RegisterAdminRoutes``), behind the login JWT and
  role ``admin`` (``api/internal/auth/middleware.go``): a dedicated local admin account logs in
  with ``POST /api/v1/auth/login`` (``Login``, 24 h tokens); a 401 (expired token, or sessions
  cleared by a StreamSpace restart) logs in again once.

  * ``POST .../:agent_id/approve`` (``ApproveAgent``): only a *pending* row (404 otherwise);
    returns a fresh 64-hex ``apiKey`` (bcrypt cost 12, about 250 ms there).
  * ``POST .../:agent_id/rotate-key`` (``RotateAPIKey``): any existing row, whatever its
    approval status (so it is used only for a row known to be approved); the old key stops
    working at once. A lost answer is recovered with this, never with a second approve.
  * ``POST .../:agent_id/reject`` (``RejectAgent``): pending rows only.
  * ``DELETE .../:agent_id`` (``DeregisterAgent``): 404 when absent, which is done too.
  * ``GET /api/v1/admin/agents`` (``ListAgents``): every row with ``approvalStatus`` and
    ``approvedBy``; ``GET .../:agent_id`` (``GetAgent``) does not select ``approval_status``, so
    a row's approval is read from the list.

Request validation is StreamSpace's (``api/internal/models/agent.go``
``AgentRegistrationRequest``): ``agentId`` 3..100 characters, ``platform`` one of kubernetes,
docker, vm, cloud; :meth:`StreamSpace.refusal` applies it before anything is written.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import aiohttp

from approver.connectors.http_client import Answer, BudgetClient
from approver.connectors.settings import StreamSpaceSettings
from approver.domain.control_plane import (
    AgentIntent,
    ControlPlaneAgent,
    ControlPlaneRefused,
    ControlPlaneRejected,
    ControlPlaneState,
    ControlPlaneUnavailable,
    Grant,
    Upstream,
)
from bootstrap_token.file_mode import mode_warning

log = logging.getLogger(__name__)

REGISTER_PATH = "/api/v1/agents/register"
CONNECT_PATH = "/api/v1/agents/connect"
HEARTBEAT_PATH = "/api/v1/agents/{agent_id}/heartbeat"
LOGIN_PATH = "/api/v1/auth/login"
ADMIN_AGENTS = "/api/v1/admin/agents"
KEY_HEADER = "X-Agent-API-Key"

#: ``AgentRegistrationRequest`` validation (api/internal/models/agent.go).
PLATFORMS = ("kubernetes", "docker", "vm", "cloud")
AGENT_ID_LENGTH = (3, 100)
#: Log in again this long before a login token's 24 h are over (``jwt.go``), in seconds.
_TOKEN_REFRESH_AFTER = 12 * 3600
_MAX_ROUNDS = 4
_SHARED_KEY = re.compile(r"[0-9a-fA-F]{64}")

_STATES = {
    "pending": ControlPlaneState.PENDING,
    "approved": ControlPlaneState.APPROVED,
    "rejected": ControlPlaneState.REJECTED,
}


class SecretFile:
    """A secret read from a mounted file: surrounding whitespace stripped, re-read on demand.
    ``repr`` and errors name the file, never its content; a mode wider than owner-only is
    warned about (:mod:`bootstrap_token.file_mode`) at each read."""

    def __init__(self, path: Path, *, what: str) -> None:
        self.path = path
        self._what = what
        self.value = self.read()

    def read(self) -> str:
        """Read the file again; raises ControlPlaneUnavailable when it is unreadable or empty."""
        try:
            value = self.path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ControlPlaneUnavailable(
                f"{self._what} {self.path}: {type(exc).__name__}"
            ) from None
        if not value:
            raise ControlPlaneUnavailable(f"{self._what} {self.path}: empty")
        warning = mode_warning(f"controlPlane.streamspace.{self._what}", self.path)
        if warning is not None:
            log.warning("%s", warning)
        self.value = value
        return value

    def __repr__(self) -> str:
        return f"SecretFile({str(self.path)!r})"


class StreamSpace:
    """The StreamSpace adapter (module docstring).

    Args:
        base_url: StreamSpace's API, ``http(s)://host:port``.
        bootstrap_key: the file holding ``AGENT_BOOTSTRAP_KEY``.
        admin_username, admin_password: the files of the dedicated admin account.
        ssl_context: trust for an https ``base_url`` (None: system trust, or plain HTTP).
        budget_seconds: most time one operation may take, retries included.
        request_timeout_seconds: most time one call may take.
        forward_client_address: send ``X-Forwarded-For`` with the agent's address.
        session: an aiohttp session to use (closed by the caller); default: one of its own.
    """

    name = "streamspace"

    def __init__(
        self,
        *,
        base_url: str,
        bootstrap_key: SecretFile,
        admin_username: SecretFile,
        admin_password: SecretFile,
        ssl_context: ssl.SSLContext | None = None,
        budget_seconds: float = 6.0,
        request_timeout_seconds: float = 3.0,
        forward_client_address: bool = True,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._own_session = session is None
        connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True)
        self._session = session or aiohttp.ClientSession(connector=connector)
        self._http = BudgetClient(
            base_url, session=self._session, request_timeout=request_timeout_seconds
        )
        self._bootstrap_key = bootstrap_key
        self._username = admin_username
        self._password = admin_password
        self._budget = budget_seconds
        self.budget_seconds = budget_seconds
        self._forward = forward_client_address
        self._token: str | None = None
        self._token_at = 0.0
        self.upstream = Upstream(
            base_url=self._http.base_url, paths=(CONNECT_PATH, HEARTBEAT_PATH), ssl=ssl_context
        )

    # --- the port ----------------------------------------------------------------------------

    def refusal(self, body: Mapping[str, object]) -> str | None:
        """StreamSpace's validation of the body (``AgentRegistrationRequest``), or None."""
        agent_id = body.get("agentId")
        low, high = AGENT_ID_LENGTH
        if not isinstance(agent_id, str) or not low <= len(agent_id) <= high:
            return f"agentId: StreamSpace requires {low}..{high} characters"
        if body.get("platform") not in PLATFORMS:
            return "platform: StreamSpace requires one of " + ", ".join(PLATFORMS)
        region = body.get("region")
        if region not in (None, "") and not (isinstance(region, str) and 2 <= len(region) <= 50):
            return "region: StreamSpace requires 2..50 characters"
        return None

    async def admit(
        self, agent: AgentIntent, *, deadline: float | None = None
    ) -> ControlPlaneState:
        """``RegisterAgent`` with the shared key: 202 pending (row made or kept), 200 approved,
        403 rejected."""
        return await self._admit(agent, self._deadline(deadline))

    def _deadline(self, given: float | None) -> float:
        own = self._http.deadline(self._budget)
        return own if given is None else min(own, given)

    async def grant(
        self,
        agent: AgentIntent,
        *,
        known: ControlPlaneState | None,
        deadline: float | None = None,
    ) -> Grant:
        """Approve (pending row) or rotate the key (approved row); register first when the row
        is absent. Stale hints are corrected from StreamSpace's answers (a 404 of approve means
        "not pending": the list tells whether it is approved, rejected or gone)."""
        deadline = self._deadline(deadline)
        state = known
        for _ in range(_MAX_ROUNDS):
            if state is None or state is ControlPlaneState.ABSENT:
                state = await self._admit(agent, deadline)
                continue
            if state is ControlPlaneState.REJECTED:
                raise ControlPlaneRejected(
                    "rejected by StreamSpace's administrator", reason="rejected_in_control_plane"
                )
            action = "approve" if state is ControlPlaneState.PENDING else "rotate-key"
            answer = await self._admin("POST", _agent_path(agent.agent_id, action), deadline)
            key = answer.get("apiKey")
            if answer.status == 200 and isinstance(key, str) and key:
                return Grant(credential=key, rotated=action == "rotate-key")
            if answer.status != 404:
                raise _unexpected(f"POST {ADMIN_AGENTS}/{{agent_id}}/{action}", answer)
            if action == "rotate-key":
                # An approved row deleted there: its administrator deregistered the agent.
                raise ControlPlaneRejected(
                    "deleted in StreamSpace while approved", reason="removed_in_control_plane"
                )
            state = await self._state_of(agent.agent_id, deadline)
        raise ControlPlaneUnavailable(f"agent state kept changing during {_MAX_ROUNDS} rounds")

    async def approve(self, agent: AgentIntent) -> ControlPlaneState:
        """``ApproveAgent`` (the key it returns is dropped: the agent gets a rotated one when it
        next registers); a row that is not pending keeps its state; an absent one is made."""
        deadline = self._http.deadline(self._budget)
        for _ in range(_MAX_ROUNDS):
            answer = await self._admin("POST", _agent_path(agent.agent_id, "approve"), deadline)
            if answer.status == 200:
                return ControlPlaneState.APPROVED
            if answer.status != 404:
                raise _unexpected(f"POST {ADMIN_AGENTS}/{{agent_id}}/approve", answer)
            state = await self._state_of(agent.agent_id, deadline)
            if state is not ControlPlaneState.ABSENT:
                return state
            await self._admit(agent, deadline)
        raise ControlPlaneUnavailable(f"agent state kept changing during {_MAX_ROUNDS} rounds")

    async def reject(self, agent_id: str) -> ControlPlaneState:
        """``RejectAgent`` for a pending row; an approved row is deleted instead (its key must
        stop working, and StreamSpace rejects only pending rows)."""
        deadline = self._http.deadline(self._budget)
        answer = await self._admin("POST", _agent_path(agent_id, "reject"), deadline)
        if answer.status == 200:
            return ControlPlaneState.REJECTED
        if answer.status != 404:
            raise _unexpected(f"POST {ADMIN_AGENTS}/{{agent_id}}/reject", answer)
        state = await self._state_of(agent_id, deadline)
        if state is ControlPlaneState.APPROVED:
            await self._delete(agent_id, deadline)
            return ControlPlaneState.ABSENT
        return state

    async def remove(self, agent_id: str) -> None:
        """``DeregisterAgent``; 404 (already gone) is success."""
        await self._delete(agent_id, self._http.deadline(self._budget))

    async def snapshot(self) -> Mapping[str, ControlPlaneAgent]:
        """``ListAgents``: every row, by agent id (rows with an unknown approval status are
        left out)."""
        return await self._list(self._http.deadline(self._budget))

    async def close(self) -> None:
        if self._own_session:
            await self._session.close()

    # --- StreamSpace calls -------------------------------------------------------------------

    async def _admit(self, agent: AgentIntent, deadline: float) -> ControlPlaneState:
        headers = {KEY_HEADER: self._bootstrap_key.value}
        if self._forward and agent.client_ip:
            headers["X-Forwarded-For"] = agent.client_ip
        answer = await self._http.call(
            "POST", REGISTER_PATH, deadline=deadline, what=f"POST {REGISTER_PATH}",
            headers=headers, body=agent.body,
        )  # fmt: skip
        if answer.status in (401, 404) and _bootstrap_refused(answer):
            # AGENT_BOOTSTRAP_KEY unset or different there: read the file again (rotated?),
            # and let the agent wait; an operator must fix it.
            self._bootstrap_key.read()
            log.error(
                "StreamSpace refused the shared bootstrap key (HTTP %d): check "
                "controlPlane.streamspace.bootstrapKeyFile against its AGENT_BOOTSTRAP_KEY",
                answer.status,
            )
            raise ControlPlaneUnavailable(f"StreamSpace refused the shared key ({answer.status})")
        if answer.status == 400:
            raise ControlPlaneRefused(_text(answer) or "StreamSpace refused the registration")
        status = answer.get("approvalStatus")
        if answer.status == 202 and status == "pending":
            return ControlPlaneState.PENDING
        if answer.status == 200 and status == "approved":
            return ControlPlaneState.APPROVED
        if answer.status == 403 and status == "rejected":
            return ControlPlaneState.REJECTED
        raise _unexpected(f"POST {REGISTER_PATH}", answer)

    async def _state_of(self, agent_id: str, deadline: float) -> ControlPlaneState:
        """The row's approval state, from ``GetAgent`` (exists?) and ``ListAgents`` (which)."""
        answer = await self._admin("GET", f"{ADMIN_AGENTS}/{quote(agent_id, safe='')}", deadline)
        if answer.status == 404:
            return ControlPlaneState.ABSENT
        if answer.status != 200:
            raise _unexpected(f"GET {ADMIN_AGENTS}/{{agent_id}}", answer)
        listed = (await self._list(deadline)).get(agent_id)
        return listed.state if listed is not None else ControlPlaneState.ABSENT

    async def _list(self, deadline: float) -> dict[str, ControlPlaneAgent]:
        answer = await self._admin("GET", ADMIN_AGENTS, deadline)
        rows = answer.get("agents")
        if answer.status != 200 or not isinstance(rows, list):
            raise _unexpected(f"GET {ADMIN_AGENTS}", answer)
        agents: dict[str, ControlPlaneAgent] = {}
        for row in rows:
            if not isinstance(row, dict):
                continue
            agent_id, state = row.get("agentId"), _STATES.get(str(row.get("approvalStatus")))
            if not isinstance(agent_id, str) or state is None:
                continue
            by = row.get("approvedBy")
            agents[agent_id] = ControlPlaneAgent(
                agent_id=agent_id,
                state=state,
                decided_by=by if isinstance(by, str) and by else None,
                decided_at=_time(row.get("approvedAt")),
                online=row.get("status") == "online",
            )
        return agents

    async def _delete(self, agent_id: str, deadline: float) -> None:
        answer = await self._admin("DELETE", _agent_path(agent_id, None), deadline)
        if answer.status not in (200, 404):
            raise _unexpected(f"DELETE {ADMIN_AGENTS}/{{agent_id}}", answer)

    async def _admin(self, method: str, path: str, deadline: float) -> Answer:
        """An admin route with the login token; one fresh login after a 401."""
        what = f"{method} {ADMIN_AGENTS}"
        for attempt in (1, 2):
            token = await self._login(deadline, fresh=attempt == 2)
            answer = await self._http.call(
                method, path, deadline=deadline, what=what,
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
            if answer.status != 401:
                if answer.status == 403:
                    raise ControlPlaneUnavailable(
                        "StreamSpace's admin account lacks role admin (HTTP 403)"
                    )
                return answer
        raise ControlPlaneUnavailable("StreamSpace refused a fresh admin login token (HTTP 401)")

    async def _login(self, deadline: float, *, fresh: bool) -> str:
        now = time.monotonic()
        if not fresh and self._token is not None and now - self._token_at < _TOKEN_REFRESH_AFTER:
            return self._token
        for attempt in (1, 2):
            answer = await self._http.call(
                "POST", LOGIN_PATH, deadline=deadline, what=f"POST {LOGIN_PATH}",
                json_body={"username": self._username.value, "password": self._password.value},
            )  # fmt: skip
            token = answer.get("token")
            if answer.status == 200 and isinstance(token, str) and token:
                self._token, self._token_at = token, time.monotonic()
                return token
            if attempt == 1 and answer.status in (401, 403):
                # The Secret may have been rotated: read the files again, try once more.
                self._username.read()
                self._password.read()
                continue
            break
        log.error(
            "StreamSpace refused the admin login (HTTP %d): check controlPlane.streamspace."
            "adminUsernameFile/adminPasswordFile (an active account with role admin)",
            answer.status,
        )
        raise ControlPlaneUnavailable(f"StreamSpace refused the admin login ({answer.status})")


def _agent_path(agent_id: str, action: str | None) -> str:
    path = f"{ADMIN_AGENTS}/{quote(agent_id, safe='')}"
    return f"{path}/{action}" if action else path


def _bootstrap_refused(answer: Answer) -> bool:
    """``RequireAuth`` refusing the key itself (not an agent-state answer of the handler)."""
    return answer.get("approvalStatus") is None


def _text(answer: Answer) -> str:
    parts = [answer.get("error"), answer.get("details"), answer.get("message")]
    return "; ".join(str(p)[:200] for p in parts if isinstance(p, str) and p)


def _unexpected(what: str, answer: Answer) -> ControlPlaneUnavailable:
    detail = _text(answer)
    return ControlPlaneUnavailable(
        f"{what}: unexpected HTTP {answer.status}" + (f" ({detail})" if detail else "")
    )


def _time(value: object) -> datetime | None:
    """An RFC 3339 time as Go writes it (nanoseconds cut to microseconds), or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def from_settings(
    settings: StreamSpaceSettings, *, budget_seconds: float, request_timeout_seconds: float
) -> StreamSpace:
    """The adapter of ``controlPlane.streamspace`` (reads the secret files now).

    Raises:
        ControlPlaneUnavailable: a secret file is unreadable or empty (the message names the
            file, never its content).
        ssl.SSLError, OSError: ``caFile`` cannot be loaded.
    """
    context = None
    if settings.url.startswith("https://"):
        context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None
        )
    bootstrap_key = SecretFile(settings.bootstrap_key_file, what="bootstrapKeyFile")
    if not _SHARED_KEY.fullmatch(bootstrap_key.value):
        # StreamSpace checks the key's format before it compares it with AGENT_BOOTSTRAP_KEY
        # (api/internal/middleware/agent_auth.go RequireAuth, ValidateAPIKeyFormat).
        raise ControlPlaneUnavailable(
            f"bootstrapKeyFile {settings.bootstrap_key_file}: StreamSpace accepts only 64 "
            "hexadecimal characters as its shared key"
        )
    return StreamSpace(
        base_url=settings.url,
        bootstrap_key=bootstrap_key,
        admin_username=SecretFile(settings.admin_username_file, what="adminUsernameFile"),
        admin_password=SecretFile(settings.admin_password_file, what="adminPasswordFile"),
        ssl_context=context,
        budget_seconds=budget_seconds,
        request_timeout_seconds=request_timeout_seconds,
        forward_client_address=settings.forward_client_address,
    )
