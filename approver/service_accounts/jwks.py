"""The service-account issuer's public keys (JWKS), from a file or a URL, cached.

The API server publishes the keys it signs service-account tokens with at ``/openid/v1/jwks``
(OIDC discovery, ``--service-account-issuer``; Kubernetes documentation, "Managing Service
Accounts", "Service account issuer discovery"). Each key is ``{"use": "sig", "kty": "RSA" |
"EC", "kid", "alg", ...}``; ``kid`` is the base64url SHA-256 of the key's DER
SubjectPublicKeyInfo (not an RFC 7638 thumbprint, so it is taken as given).

Accepted keys, and the one algorithm each verifies (RFC 7518 section 3.1; the API server signs
with RS256 for RSA keys and ES256/ES384/ES512 for P-256/P-384/P-521 keys):

=====================  ==================================  ==================================
``kty``                requirement                         algorithm
=====================  ==================================  ==================================
``RSA``                modulus at least 2048 bits          ``alg`` if RS256/RS384/RS512, else
                                                           RS256
``EC``                 curve P-256 / P-384 / P-521         ES256 / ES384 / ES512 (``alg``, if
                                                           present, must agree)
anything else          skipped with a warning (``OKP``: Kubernetes does not sign with it);
                       an ``oct`` (HMAC) key carries its secret ``k``: see below
=====================  ====================================================================

A key carrying private members (``d``, ..., or the ``k`` of a symmetric key, with which anyone
holding the JWKS could forge tokens) makes the whole document unusable: a leaked secret must be
noticed, not used. A key without ``kid`` or with ``use`` other than ``sig`` is skipped.

Caching (:class:`JwksCache`): the document is fetched on first use, again when it is older than
``refresh_seconds``, and again when a token names an unknown ``kid``, but never more often than
once per ``min_refresh_interval_seconds`` (so a flood of tokens with random ``kid`` values costs
at most one fetch per interval). A failed fetch keeps the last good keys. A key removed from the
document stops verifying after the next refresh.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric.ec import (
    SECP256R1,
    SECP384R1,
    SECP521R1,
    EllipticCurvePublicKey,
)
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

log = logging.getLogger(__name__)

#: Largest JWKS document read, in bytes. A cluster's JWKS is a few KiB even mid-rotation.
MAX_JWKS_BYTES = 256 * 1024
#: RSA keys below this many bits are refused (NIST SP 800-57 Part 1, 112-bit security).
MIN_RSA_BITS = 2048

_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512"})
_EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_EC_CURVES = {"ES256": SECP256R1, "ES384": SECP384R1, "ES512": SECP521R1}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})

#: Every algorithm an issuer key can stand for; a token header naming anything else (``none``,
#: ``HS256``, ``EdDSA``, ``PS256``) is refused before any key is looked up.
SUPPORTED_ALGORITHMS = frozenset(_RSA_ALGORITHMS | set(_EC_ALGORITHMS.values()))

PublicKey = RSAPublicKey | EllipticCurvePublicKey


class JwksError(ValueError):
    """A JWKS document cannot be used. The message names the problem, never key material."""


class JwksUnavailable(Exception):
    """No JWKS could be loaded yet (the source failed every time so far)."""


@dataclass(frozen=True, slots=True)
class IssuerKey:
    """One verification key: its ``kid``, the one algorithm it verifies, the key object."""

    kid: str
    algorithm: str
    key: PublicKey = field(repr=False)


def _algorithm(jwk: Mapping[str, Any], index: int) -> str | None:
    kty = jwk.get("kty")
    alg = jwk.get("alg")
    if kty == "RSA":
        if alg is None:
            return "RS256"
        if alg in _RSA_ALGORITHMS:
            return str(alg)
        log.warning("JWKS keys[%d] skipped: RSA key with alg %r", index, alg)
        return None
    if kty == "EC":
        expected = _EC_ALGORITHMS.get(str(jwk.get("crv")))
        if expected is None or alg not in (None, expected):
            log.warning(
                "JWKS keys[%d] skipped: EC key with crv %r alg %r", index, jwk.get("crv"), alg
            )
            return None
        return expected
    log.warning("JWKS keys[%d] skipped: kty %r is not RSA or EC", index, kty)
    return None


def parse_jwks(data: bytes) -> dict[str, IssuerKey]:
    """Parse a JWKS document (RFC 7517 section 5) into the usable keys, by ``kid``.

    Args:
        data: the JSON document.

    Returns:
        ``{kid: IssuerKey}``; unusable keys are skipped with a warning (table above).

    Raises:
        JwksError: not a JSON object with a ``keys`` list, a key with private material, or no
            usable key at all.
    """
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise JwksError("JWKS is not valid JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError("JWKS must be an object with a 'keys' list")
    keys: dict[str, IssuerKey] = {}
    for index, jwk in enumerate(document["keys"]):
        if not isinstance(jwk, dict):
            raise JwksError(f"JWKS keys[{index}] is not an object")
        if _PRIVATE_MEMBERS & set(jwk):
            raise JwksError(f"JWKS keys[{index}] holds private key material")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            log.warning("JWKS keys[%d] skipped: no kid", index)
            continue
        if jwk.get("use", "sig") != "sig":
            log.warning("JWKS keys[%d] skipped: use %r is not 'sig'", index, jwk.get("use"))
            continue
        algorithm = _algorithm(jwk, index)
        if algorithm is None:
            continue
        try:
            key = jwt.PyJWK(dict(jwk), algorithm=algorithm).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            log.warning("JWKS keys[%d] skipped: not a valid %s public key", index, algorithm)
            continue
        if isinstance(key, RSAPublicKey):
            if algorithm not in _RSA_ALGORITHMS or key.key_size < MIN_RSA_BITS:
                log.warning("JWKS keys[%d] skipped: RSA key below %d bits", index, MIN_RSA_BITS)
                continue
        elif isinstance(key, EllipticCurvePublicKey):
            if not isinstance(key.curve, _EC_CURVES.get(algorithm, type(None))):
                log.warning("JWKS keys[%d] skipped: curve does not match %s", index, algorithm)
                continue
        else:
            log.warning("JWKS keys[%d] skipped: not an RSA or EC public key", index)
            continue
        if kid in keys:
            log.warning("JWKS keys[%d] skipped: duplicate kid", index)
            continue
        keys[kid] = IssuerKey(kid=kid, algorithm=algorithm, key=key)
    if not keys:
        raise JwksError("JWKS holds no usable RSA or EC signing key")
    return keys


Fetch = Callable[[], Awaitable[bytes]]


def file_source(path: Path) -> Fetch:
    """A fetch function reading ``path`` (e.g. ``kubectl get --raw /openid/v1/jwks > jwks.json``,
    or a ConfigMap mount). Raises OSError or JwksError (file too large)."""

    async def fetch() -> bytes:
        data = await asyncio.to_thread(_read_bounded, path)
        return data

    return fetch


def _read_bounded(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_JWKS_BYTES + 1)
    if len(data) > MAX_JWKS_BYTES:
        raise JwksError(f"JWKS file larger than {MAX_JWKS_BYTES} bytes")
    return data


class UrlSource:
    """Fetches the JWKS from a URL with aiohttp (``GET``, 200 only, at most 256 KiB).

    Args:
        url: e.g. ``https://oidc.example.com/openid/v1/jwks``.
        session: a client session to use; default: one of its own, closed by :meth:`close`.
        ssl_context: TLS trust for the URL (e.g. the cluster CA); default: the system's.
        timeout_seconds: total time for one fetch.
    """

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._url = url
        self._session = session
        self._own_session = session is None
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def __call__(self) -> bytes:
        """Fetch once. Raises JwksError (status, size) or aiohttp.ClientError / TimeoutError."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.get(
            self._url,
            ssl=self._ssl,
            timeout=self._timeout,
            headers={"Accept": "application/jwk-set+json, application/json"},
        ) as response:
            if response.status != 200:
                raise JwksError(f"JWKS URL answered HTTP {response.status}")
            data = await response.content.read(MAX_JWKS_BYTES + 1)
        if len(data) > MAX_JWKS_BYTES:
            raise JwksError(f"JWKS document larger than {MAX_JWKS_BYTES} bytes")
        return data

    async def close(self) -> None:
        """Close the session if this source opened it. Idempotent."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None


class JwksCache:
    """The issuer's keys, fetched through ``fetch`` and cached (module docstring).

    Args:
        fetch: returns the JWKS document's bytes (:func:`file_source`, :class:`UrlSource`).
        source: a description for logs (the file or URL; never a credential).
        refresh_seconds: re-fetch a document older than this, in seconds.
        min_refresh_interval_seconds: never fetch more often than this, in seconds, whatever
            the reason (expiry, unknown ``kid``, a failed fetch).
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        source: str,
        refresh_seconds: float = 300.0,
        min_refresh_interval_seconds: float = 30.0,
    ) -> None:
        self._fetch = fetch
        self._source = source
        self._refresh = refresh_seconds
        self._min_interval = min_refresh_interval_seconds
        self._keys: dict[str, IssuerKey] | None = None
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._fetches = 0
        self._lock = asyncio.Lock()

    @property
    def fetches(self) -> int:
        """How many fetches were attempted (for metrics and tests)."""
        return self._fetches

    @property
    def kids(self) -> frozenset[str]:
        """The ``kid`` values currently cached."""
        return frozenset(self._keys or ())

    async def key(self, kid: str, *, now: float) -> IssuerKey | None:
        """The key named ``kid``, refreshing the cache when due (module docstring).

        Args:
            kid: the token header's ``kid``.
            now: seconds since the epoch.

        Returns:
            The key, or None when the (refreshed, if allowed) document has no such ``kid``.

        Raises:
            JwksUnavailable: no document could be loaded so far.
        """
        if (
            self._keys is None
            or self._fetched_at is None
            or now - self._fetched_at >= self._refresh
        ):
            await self._refresh_if_allowed(now)
        if self._keys is not None and kid not in self._keys:
            await self._refresh_if_allowed(now)
        if self._keys is None:
            raise JwksUnavailable(f"no JWKS loaded from {self._source} yet")
        return self._keys.get(kid)

    async def load(self, *, now: float) -> None:
        """Fetch now (e.g. at start, to fail fast). Raises JwksUnavailable when it fails."""
        await self._refresh_if_allowed(now, force=True)
        if self._keys is None:
            raise JwksUnavailable(f"no JWKS loaded from {self._source}")

    async def _refresh_if_allowed(self, now: float, *, force: bool = False) -> None:
        async with self._lock:
            # Re-checked under the lock: a concurrent caller may just have fetched.
            if (
                not force
                and self._attempted_at is not None
                and now - self._attempted_at < self._min_interval
            ):
                return
            self._attempted_at = now
            self._fetches += 1
            try:
                keys = parse_jwks(await self._fetch())
            except (JwksError, OSError, aiohttp.ClientError, TimeoutError) as exc:
                log.warning(
                    "JWKS from %s not refreshed (%s: %s); %s",
                    self._source,
                    type(exc).__name__,
                    exc,
                    "keeping the last good keys" if self._keys is not None else "no keys yet",
                )
                return
            if self._keys is not None and keys.keys() != self._keys.keys():
                log.info(
                    "JWKS from %s: kids now %s (were %s)",
                    self._source,
                    sorted(keys),
                    sorted(self._keys),
                )
            self._keys = keys
            self._fetched_at = now
