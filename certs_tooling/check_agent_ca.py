"""``certs-tooling check`` for the agent CA (written by ``agent-ca``; optional, so a folder
without ``agent-ca.crt`` gets none of these findings). Pure.

* expiry of ``agent-ca.crt`` (and of ``agent-ca-previous.crt`` during a rotation);
* ``agent-ca.crt`` is a CA and ``agent-ca.key`` is its key (the approver signs with the pair);
* ``agent-ca-bundle.crt`` (what the approver's gate trusts) contains ``agent-ca.crt``, else the
  gate refuses every agent certificate the approver issues; during a rotation it also contains
  ``agent-ca-previous.crt``, and the rotation itself is a WARN (it needs ``agent-ca finish``).

The key's permissions are part of the common permissions check (:mod:`certs_tooling.check_files`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from certs_tooling.certinfo import load_certs
from certs_tooling.findings import Finding, Level, Named, ca_findings, expiry, parse_cert


@dataclass(frozen=True, slots=True)
class AgentCaInputs:
    """The ``agent-ca`` files; an absent one skips the checks that need it."""

    ca: Named | None = None
    key: Named | None = None
    bundle: Named | None = None
    previous: Named | None = None


def run(inputs: AgentCaInputs, *, now: datetime, warn_days: int) -> list[Finding]:
    """Every check of the module docstring that ``inputs`` allows: agent CA, previous agent CA,
    bundle. Never raises for bad file contents (those are FAIL findings)."""
    out: list[Finding] = []
    ca = ca_findings(inputs.ca, inputs.key, now=now, warn_days=warn_days, out=out)
    previous = parse_cert(inputs.previous, out) if inputs.previous else None
    if inputs.previous and previous is not None:
        out.append(expiry(inputs.previous.name, previous, now=now, warn_days=warn_days))
        out.append(
            Finding(
                Level.WARN,
                inputs.previous.name,
                "agent CA rotation in progress: once no agent certificate of the previous "
                "agent CA can be in use, run `agent-ca finish`",
            )
        )
    if inputs.bundle is None:
        return out
    try:
        bundle = load_certs(inputs.bundle.data)
    except ValueError:
        out.append(Finding(Level.FAIL, inputs.bundle.name, "not a PEM certificate bundle"))
        return out
    for named, cert, missing in (
        (inputs.ca, ca, ": the approver's gate would refuse the agent certificates it issues"),
        (inputs.previous, previous, ""),
    ):
        if named is None or cert is None:
            continue
        if cert in bundle:
            out.append(Finding(Level.OK, inputs.bundle.name, f"contains {named.name}"))
        else:
            out.append(
                Finding(Level.FAIL, inputs.bundle.name, f"does not contain {named.name}{missing}")
            )
    return out


__all__ = ["AgentCaInputs", "run"]
