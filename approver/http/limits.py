"""Answers to a request refused by a limit on unauthenticated writes
(:mod:`approver.domain.pending_limits`): both carry ``Retry-After`` and nothing was written.

* On StreamSpace's agent registration path: ``202`` ``{"approvalStatus": "pending", "message",
  "reason"}`` (:func:`approver.http.answers.pending_retry_answer`, as for an outage). The agent
  exits on any status but 200/201/202 at its first attempt, and while it waits any decodable
  answer whose ``approvalStatus`` is not ``pending`` or ``rejected`` counts as an approval: a 429
  would be fatal, or worse, taken for a yes.
* Anywhere else: ``429`` ``{"error": reason, "message"}`` (RFC 6585). No other route writes
  for an unauthenticated caller today (the review and the admin API need a bearer, the agent
  gate's refusals are audit lines only), so only the registration route uses this now.
"""

from __future__ import annotations

from aiohttp import web

from approver.domain.pending_limits import PendingLimited, PendingLimitReason
from approver.http.answers import pending_retry_answer
from approver.http.common import json_error, json_response
from approver.http.errors import NO_STORE

#: What the answer tells the caller, per reason (no figure, no value of the request).
_MESSAGES = {
    PendingLimitReason.RATE_LIMITED: "too many new registrations without a credential",
    PendingLimitReason.NAMESPACE_FULL: "too many registrations without a credential are "
    "waiting for an administrator",
}


def limited_response(limited: PendingLimited, *, agent_path: bool) -> web.Response:
    """The answer to a request ``limited`` refused: 202 pending on the agent registration path
    (``agent_path``), 429 elsewhere; ``Retry-After`` either way."""
    retry = {"Retry-After": str(limited.retry_after_seconds)}
    message = _MESSAGES[limited.reason]
    if agent_path:
        return json_response(
            pending_retry_answer(limited.reason.value, message),
            status=202,
            headers={**NO_STORE, **retry},
        )
    response = json_error(429, limited.reason.value, f"{message}; retry")
    response.headers.update({**NO_STORE, **retry})
    return response
