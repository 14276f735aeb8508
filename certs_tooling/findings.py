"""What every ``certs-tooling check`` module shares: the finding levels and lines, named file
bytes, and the checks that apply to any certificate (expiry, key match). Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from cryptography import x509

from certs_tooling.certinfo import is_ca, key_matches, load_cert, load_private_key, seconds_left


class Level(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: ``subject`` is usually a file name."""

    level: Level
    subject: str
    message: str

    def line(self) -> str:
        return f"{self.level:<4}  {self.subject}: {self.message}"


@dataclass(frozen=True, slots=True)
class Named:
    """A file's display name and its bytes."""

    name: str
    data: bytes = field(repr=False)


def _fmt(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def expiry(name: str, cert: x509.Certificate, *, now: datetime, warn_days: int) -> Finding:
    """FAIL if ``now`` is outside notBefore..notAfter, WARN under ``warn_days`` left, else OK."""
    if now < cert.not_valid_before_utc:
        return Finding(Level.FAIL, name, f"not valid before {_fmt(cert.not_valid_before_utc)}")
    left = seconds_left(cert, now)
    days = int(abs(left) // 86400)
    until = _fmt(cert.not_valid_after_utc)
    if left <= 0:
        return Finding(Level.FAIL, name, f"expired at {until} ({days} days ago)")
    if left < timedelta(days=warn_days).total_seconds():
        return Finding(Level.WARN, name, f"expires at {until} (in {days} days)")
    return Finding(Level.OK, name, f"valid until {until} ({days} days left)")


def parse_cert(named: Named, findings: list[Finding]) -> x509.Certificate | None:
    try:
        return load_cert(named.data)
    except ValueError:
        findings.append(Finding(Level.FAIL, named.name, "not a PEM certificate"))
        return None


def key_match(cert_name: str, cert: x509.Certificate, key: Named) -> Finding:
    """OK when ``key`` is the private half of ``cert``."""
    try:
        private = load_private_key(key.data)
    except ValueError:
        return Finding(Level.FAIL, key.name, "not an unencrypted PEM private key")
    if key_matches(cert, private):
        return Finding(Level.OK, key.name, f"matches {cert_name}")
    return Finding(Level.FAIL, key.name, f"does not belong to {cert_name}")


__all__ = ["Finding", "Level", "Named", "expiry", "key_match", "parse_cert"]


def ca_findings(
    ca: Named | None, key: Named | None, *, now: datetime, warn_days: int, out: list[Finding]
) -> x509.Certificate | None:
    """Expiry, "is a CA" and (with ``key``) key-match findings for a CA certificate, appended
    to ``out``; returns the parsed CA (None when absent or unparsable)."""
    cert = parse_cert(ca, out) if ca else None
    if ca and cert is not None:
        out.append(expiry(ca.name, cert, now=now, warn_days=warn_days))
        if is_ca(cert):
            out.append(Finding(Level.OK, ca.name, "is a CA (cA, keyCertSign)"))
        else:
            out.append(Finding(Level.FAIL, ca.name, "is not a CA certificate"))
        if key:
            out.append(key_match(ca.name, cert, key))
    return cert
