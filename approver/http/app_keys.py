"""Everything the approver stores on its aiohttp application, declared together (aiohttp's
``web.AppKey``), so handlers in several modules share one typed vocabulary."""

from __future__ import annotations

from aiohttp import web

from approver.admin import AdminService
from approver.audit.sampling import LineSampler
from approver.config import ApproverSettings
from approver.control_plane_sync import ControlPlaneSync
from approver.domain.control_plane import ControlPlane
from approver.files.tokens import TokenFile
from approver.metrics import ApproverMetrics
from approver.registration import Registrar
from approver.review import CredentialReviewer
from approver.store import Store
from bootstrap_token import AuditSink

SETTINGS_KEY = web.AppKey("settings", ApproverSettings)
STORE_KEY = web.AppKey("store", Store)
REGISTRAR_KEY = web.AppKey("registrar", Registrar)
ADMIN_KEY = web.AppKey("admin", AdminService)
REVIEWER_KEY = web.AppKey("reviewer", CredentialReviewer)
ADMIN_TOKENS_KEY = web.AppKey("admin_tokens", TokenFile)
REVIEW_TOKENS_KEY = web.AppKey("review_tokens", TokenFile)
AUDIT_KEY = web.AppKey("audit", AuditSink)
CONTROL_PLANE_KEY = web.AppKey("control_plane", ControlPlane)
SYNC_KEY = web.AppKey("control_plane_sync", ControlPlaneSync)
#: Samples the refused admin requests' audit lines (``admin.auth``): a flood of bad bearers is
#: a few lines with counts (approver.audit.sampling).
AUTH_LINES_KEY = web.AppKey("auth_lines", LineSampler)
#: The approver's Prometheus series (approver.metrics).
METRICS_KEY = web.AppKey("metrics", ApproverMetrics)
