"""Agent client certificates over HTTP (:mod:`approver.agent_certificates`).

* ``POST /api/v1/agents/{agentId}/certificate`` with ``{"csr": "<PEM PKCS #10>"}``: the agent's
  current key in ``X-Agent-API-Key``, or (a renewal) its live certificate in the TLS handshake.
  200 ``{"certificate": PEM, "caCertificate": PEM, "serial": hex, "notBefore", "notAfter",
  "renewAfter": RFC 3339}``. 400 ``invalid_csr`` / ``csr_not_allowed`` / ``invalid_agent_id``;
  401 ``missing_credential``; 403 ``invalid_api_key``, ``agent_not_active``,
  ``certificate_agent_mismatch``, ``certificate_not_live``; 429 ``certificate_rate_limited``
  with Retry-After (``minReissueSeconds``); 503 with Retry-After (database).
* ``GET /api/v1/agent-certificates/revoked``: ``{"revoked": [{"serial", "revokedAt"}]}``, every
  unexpired certificate that no longer counts, for control planes that verify agent
  certificates themselves. Serials are public; no authentication.
* ``GET /api/v1/agent-certificates/crl``: the same for the current agent CA's certificates, as a
  DER CRL (``application/pkix-crl``, RFC 5280 section 5; RFC 2585 section 4.2 media type).
* ``GET /api/v1/admin/agents/{agentId}/certificates`` (admin bearer): ``{"certificates": [...]}``.
* ``POST /api/v1/admin/agent-certificates/{serial}/revoke`` (admin bearer):
  ``{"certificate": {...}}`` or 404 ``certificate_not_found``. The serial in hex, any case,
  with or without leading zeros and colons (``openssl x509 -serial`` prints ``0FE3...``).

Every refusal is an audit line (``agent.certificate``, decision ``refused`` or ``invalid``, not
stored); every issuance and revocation a stored event. No answer, line or event carries the
key; the certificate is identified by serial and SHA-256 prefix.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from aiohttp import web
from cryptography import x509

from approver.agent_certificates import AgentCertificates, RateLimited, certificate_of
from approver.agent_certs.records import CertificateRow
from approver.domain.agent_certificates import CsrRefused
from approver.domain.credentials import API_KEY_HEADER as KEY_HEADER
from approver.domain.requests import BadRequest, check_agent_id
from approver.gate import GateRefusal
from approver.http.app_keys import ADMIN_TOKENS_KEY, AUDIT_KEY
from approver.http.common import authenticate, json_error, json_response, read_json
from bootstrap_token import AuditEvent, fingerprint

CERTIFICATE_PATH = "/api/v1/agents/{agent_id}/certificate"
REVOKED_PATH = "/api/v1/agent-certificates/revoked"
CRL_PATH = "/api/v1/agent-certificates/crl"
ADMIN_LIST_PATH = "/api/v1/admin/agents/{agent_id}/certificates"
ADMIN_REVOKE_PATH = "/api/v1/admin/agent-certificates/{serial}/revoke"

CERTIFICATES_KEY = web.AppKey("agent_certificates", AgentCertificates)

_SERIAL = re.compile(r"[0-9a-f]{1,40}")


def peer_certificate(request: web.Request) -> x509.Certificate | None:
    """The client certificate of the request's TLS connection, verified by the handshake
    against the trusted agent CAs (``ssl.CERT_OPTIONAL``), or None (none presented, or plain
    HTTP)."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    return certificate_of(ssl_object.getpeercert(binary_form=True))


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def row_json(row: CertificateRow) -> dict[str, Any]:
    """One certificate's public facts (admin answers)."""
    return {
        "serial": row.serial,
        "agentId": row.agent_id,
        "sha256": row.sha256,
        "issuedAt": _time(row.issued_at),
        "notBefore": _time(row.not_before),
        "notAfter": _time(row.not_after),
        "issuedWith": row.issued_with.value,
        "issuerSha256": row.issuer_sha256,
        "revokedAt": _time(row.revoked_at) if row.revoked_at else None,
        "revokedReason": row.revoked_reason.value if row.revoked_reason else None,
        "revokedBy": row.revoked_by,
    }


def _refused(
    request: web.Request,
    *,
    status: int,
    code: str,
    message: str,
    agent_id: str | None,
    key: str | None,
    security: bool = False,
) -> web.Response:
    request.app[AUDIT_KEY].emit(
        AuditEvent(
            component="approver",
            event="agent.certificate",
            decision="invalid" if status in (400, 415) else "refused",
            reason=code,
            security=security,
            agent_id=agent_id,
            credential=fingerprint(key) if key else None,
            message=message,
        )
    )
    return json_error(status, code, message)


async def issue(request: web.Request) -> web.Response:
    """``POST /api/v1/agents/{agentId}/certificate`` (module docstring)."""
    agent_id = request.match_info["agent_id"]
    key = request.headers.get(KEY_HEADER, "").strip() or None
    try:
        check_agent_id(agent_id, where="agentId")
        body = await read_json(request)
        csr = body.get("csr") if isinstance(body, dict) else None
        if not isinstance(csr, str) or not csr:
            raise BadRequest("invalid_request", 'send {"csr": "<PEM certificate request>"}')
        issued = await request.app[CERTIFICATES_KEY].issue(
            agent_id=agent_id, csr_pem=csr, api_key=key, peer=peer_certificate(request)
        )
    except BadRequest as exc:
        status = 415 if exc.code == "unsupported_media_type" else 400
        return _refused(
            request, status=status, code=exc.code, message=exc.message, agent_id=None, key=key
        )
    except CsrRefused as exc:
        return _refused(
            request, status=400, code=exc.code, message=exc.message, agent_id=agent_id, key=key
        )
    except GateRefusal as exc:
        answer = _refused(
            request, status=exc.status, code=exc.code, message=exc.message, agent_id=agent_id,
            key=key, security=exc.security,
        )  # fmt: skip
        if isinstance(exc, RateLimited):
            answer.headers["Retry-After"] = str(exc.retry_after)
        return answer
    row = issued.row
    return json_response(
        {
            "certificate": issued.certificate_pem,
            "caCertificate": issued.ca_pem,
            "serial": row.serial,
            "notBefore": _time(row.not_before),
            "notAfter": _time(row.not_after),
            "renewAfter": _time(issued.renew_after),
        }
    )


async def revoked(request: web.Request) -> web.Response:
    """``GET /api/v1/agent-certificates/revoked``."""
    entries = await request.app[CERTIFICATES_KEY].revoked()
    return json_response(
        {"revoked": [{"serial": serial, "revokedAt": _time(at)} for serial, at in entries]}
    )


async def crl(request: web.Request) -> web.Response:
    """``GET /api/v1/agent-certificates/crl``: DER."""
    body = await request.app[CERTIFICATES_KEY].crl()
    return web.Response(body=body, content_type="application/pkix-crl")


async def admin_list(request: web.Request) -> web.Response:
    """``GET /api/v1/admin/agents/{agentId}/certificates``."""
    actor = authenticate(request, request.app[ADMIN_TOKENS_KEY])
    agent_id = request.match_info["agent_id"]
    check_agent_id(agent_id, where="agentId")
    rows = await request.app[CERTIFICATES_KEY].certificates(agent_id, actor=actor)
    return json_response({"certificates": [row_json(r) for r in rows]})


async def admin_revoke(request: web.Request) -> web.Response:
    """``POST /api/v1/admin/agent-certificates/{serial}/revoke``."""
    actor = authenticate(request, request.app[ADMIN_TOKENS_KEY])
    # As stored: lower case, no leading zeros, no colons (openssl x509 -serial prints 0FE3...).
    serial = request.match_info["serial"].lower().replace(":", "").lstrip("0") or "0"
    if not _SERIAL.fullmatch(serial):
        raise BadRequest(
            "invalid_serial", "a serial is 1..40 hex digits (leading zeros and colons allowed)"
        )
    row = await request.app[CERTIFICATES_KEY].revoke(serial=serial, actor=actor)
    if row is None:
        return json_error(404, "certificate_not_found", "no certificate has this serial")
    return json_response({"certificate": row_json(row)})


def add_routes(app: web.Application) -> None:
    app.router.add_post(CERTIFICATE_PATH, issue)
    app.router.add_get(REVOKED_PATH, revoked)
    app.router.add_get(CRL_PATH, crl)
    app.router.add_get(ADMIN_LIST_PATH, admin_list)
    app.router.add_post(ADMIN_REVOKE_PATH, admin_revoke)
