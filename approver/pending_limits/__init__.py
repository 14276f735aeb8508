"""The limits on unauthenticated pending registrations: their settings (``pendingLimits``,
:mod:`approver.pending_limits.settings`) and the gate the registrar asks in the decision's
transaction (:mod:`approver.pending_limits.gate`). The rules are
:mod:`approver.domain.pending_limits`."""
