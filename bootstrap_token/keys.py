"""Ed25519 signing keys, verification key sets, JWK thumbprints and JWKS documents.

* ``kid`` is the RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of the public key,
  so a kid is derived from the key itself and can never name another key.
* A JWKS (RFC 7517 section 5) holds public keys only: loading one that carries private
  members (``d``) fails, so a misplaced private key is noticed instead of being published.
* Keys are parsed once into :mod:`cryptography` key objects; nothing here re-parses per request.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bootstrap_token.errors import KeyLoadError

_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def jwk_thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint of an Ed25519 public key (the ``kid`` of this project).

    The required members of an OKP key are ``crv``, ``kty`` and ``x`` (RFC 8037 section 2),
    serialised in lexicographic order without whitespace (RFC 7638 section 3.2), hashed with
    SHA-256 and base64url-encoded without padding. Returns 43 characters.
    """
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw_public(public_key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The public JWK of ``public_key``: ``kty``, ``crv``, ``x``, ``kid``, ``use``, ``alg``."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(_raw_public(public_key)),
        "kid": jwk_thumbprint(public_key),
        "use": "sig",
        "alg": "EdDSA",
    }


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 private key with its ``kid``. ``repr`` never shows key material."""

    private_key: Ed25519PrivateKey = field(repr=False)
    kid: str

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random Ed25519 key (from the OS CSPRNG, through :mod:`cryptography`)."""
        key = Ed25519PrivateKey.generate()
        return cls(private_key=key, kid=jwk_thumbprint(key.public_key()))

    @classmethod
    def from_pem(cls, data: bytes) -> SigningKey:
        """Load an unencrypted PKCS#8 PEM Ed25519 private key.

        Raises:
            KeyLoadError: not PEM, encrypted, or not an Ed25519 private key.
        """
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyLoadError(
                f"not an unencrypted PEM private key: {type(exc).__name__}"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyLoadError(f"signing key must be Ed25519, got {type(key).__name__}")
        return cls(private_key=key, kid=jwk_thumbprint(key.public_key()))

    @classmethod
    def from_file(cls, path: Path) -> SigningKey:
        """Read :meth:`from_pem` from ``path``. Raises KeyLoadError, OSError."""
        return cls.from_pem(path.read_bytes())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def private_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted (write it with mode 0600)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM of the public key."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class KeySet(Mapping[str, Ed25519PublicKey]):
    """Verification keys by ``kid``: what the approver trusts. Immutable once built."""

    __slots__ = ("_clusters", "_keys")

    def __init__(
        self,
        keys: Iterable[Ed25519PublicKey] = (),
        *,
        clusters: Mapping[str, str] | None = None,
    ) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {jwk_thumbprint(k): k for k in keys}
        #: kid -> the one cluster whose tokens the key may sign (JWK member ``cluster``).
        self._clusters: dict[str, str] = {
            kid: name for kid, name in (clusters or {}).items() if kid in self._keys
        }

    def cluster_of(self, kid: str) -> str | None:
        """The cluster key ``kid`` is tied to (its JWK's ``cluster`` member), or None when the
        key may sign for any cluster the verifier accepts."""
        return self._clusters.get(kid)

    def tied_to(self, cluster: str) -> KeySet:
        """The same keys, each tied to ``cluster`` (``certs-tooling jwks --cluster``)."""
        return KeySet(self._keys.values(), clusters=dict.fromkeys(self._keys, cluster))

    def merged(self, other: KeySet) -> KeySet:
        """The keys of both sets; a key in both keeps this set's cluster binding.

        Raises:
            KeyLoadError: one key is tied to two different clusters.
        """
        clusters = dict(other._clusters)
        for kid, name in self._clusters.items():
            if clusters.get(kid, name) != name:
                raise KeyLoadError(f"key {kid} is tied to two clusters")
            clusters[kid] = name
        return KeySet([*self._keys.values(), *other._keys.values()], clusters=clusters)

    def __getitem__(self, kid: str) -> Ed25519PublicKey:
        return self._keys[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeySet(kids={sorted(self._keys)!r})"

    @classmethod
    def from_jwks(cls, document: Mapping[str, Any] | bytes | str) -> KeySet:
        """Build from a JWKS document (RFC 7517 section 5), as a mapping or JSON text.

        Only ``kty: OKP`` / ``crv: Ed25519`` keys are accepted. A ``kid`` present in the document
        must equal the key's RFC 7638 thumbprint. An optional ``cluster`` member (a non-empty
        string; RFC 7517 section 4 allows members of one's own) ties the key to that cluster:
        :func:`bootstrap_token.verify` then refuses its tokens for any other ``cluster`` claim.

        Raises:
            KeyLoadError: not JSON, no ``keys`` list, private members present, a key that is not
                Ed25519, or a ``kid`` that is not the key's thumbprint.
        """
        if isinstance(document, bytes | str):
            try:
                document = json.loads(document)
            except json.JSONDecodeError as exc:
                raise KeyLoadError(
                    f"JWKS is not valid JSON (line {exc.lineno}, column {exc.colno})"
                ) from None
            except ValueError:  # bytes that are not UTF-8
                raise KeyLoadError("JWKS is not valid JSON (not UTF-8 text)") from None
        if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
            raise KeyLoadError("JWKS must be an object with a 'keys' list")
        keys: list[Ed25519PublicKey] = []
        clusters: dict[str, str] = {}
        for index, jwk in enumerate(document["keys"]):
            if not isinstance(jwk, Mapping):
                raise KeyLoadError(f"JWKS keys[{index}] is not an object")
            if _PRIVATE_JWK_MEMBERS & set(jwk):
                raise KeyLoadError(f"JWKS keys[{index}] holds private key material")
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                raise KeyLoadError(f"JWKS keys[{index}] is not an Ed25519 (OKP) key")
            try:
                key = jwt.PyJWK(dict(jwk), algorithm="EdDSA").key
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                raise KeyLoadError(f"JWKS keys[{index}] is not a valid Ed25519 JWK") from None
            if not isinstance(key, Ed25519PublicKey):
                raise KeyLoadError(f"JWKS keys[{index}] is not an Ed25519 public key")
            if "kid" in jwk and jwk["kid"] != jwk_thumbprint(key):
                raise KeyLoadError(f"JWKS keys[{index}] kid is not its RFC 7638 thumbprint")
            if "cluster" in jwk:
                cluster = jwk["cluster"]
                if not isinstance(cluster, str) or not cluster:
                    raise KeyLoadError(f"JWKS keys[{index}] cluster is not a non-empty string")
                kid = jwk_thumbprint(key)
                if clusters.get(kid, cluster) != cluster:
                    raise KeyLoadError(f"JWKS keys[{index}] is tied to two clusters")
                clusters[kid] = cluster
            keys.append(key)
        return cls(keys, clusters=clusters)

    @classmethod
    def from_public_pem(cls, data: bytes) -> KeySet:
        """Build from one or more concatenated SubjectPublicKeyInfo PEM blocks.

        Raises:
            KeyLoadError: no PEM block, or one that is not an Ed25519 public key.
        """
        marker = b"-----END PUBLIC KEY-----"
        blocks = [b + marker for b in data.split(marker) if b.strip()]
        if not blocks:
            raise KeyLoadError("no PEM public key found")
        keys: list[Ed25519PublicKey] = []
        for block in blocks:
            try:
                key = serialization.load_pem_public_key(block.strip() + b"\n")
            except ValueError:
                raise KeyLoadError("not a PEM public key") from None
            if not isinstance(key, Ed25519PublicKey):
                raise KeyLoadError(f"verification key must be Ed25519, got {type(key).__name__}")
            keys.append(key)
        return cls(keys)

    @classmethod
    def from_file(cls, path: Path) -> KeySet:
        """Load a JWKS or PEM public keys from ``path``.

        A file named ``*.json``, or whose content starts with ``{`` or ``[``, is read as a JWKS
        (so a broken ``jwks.json`` is reported as JSON, with its line and column); a file
        holding a ``-----BEGIN`` line as PEM; anything else is neither.

        Raises:
            KeyLoadError: the content is not a usable JWKS / PEM, or is neither (the message
                says which, never the content).
            OSError: the file cannot be read.
        """
        data = path.read_bytes()
        head = data.lstrip()[:1]
        if path.suffix.lower() == ".json" or head in (b"{", b"["):
            return cls.from_jwks(data)
        if b"-----BEGIN" in data:
            return cls.from_public_pem(data)
        raise KeyLoadError(
            "neither a JWKS (a JSON object with a 'keys' list) nor PEM public keys "
            "(-----BEGIN PUBLIC KEY-----)"
        )

    def to_jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWKS document, keys sorted by ``kid`` for stable output; a key tied to a
        cluster carries its ``cluster`` member."""
        keys = []
        for kid in sorted(self._keys):
            jwk = public_jwk(self._keys[kid])
            if kid in self._clusters:
                jwk["cluster"] = self._clusters[kid]
            keys.append(jwk)
        return {"keys": keys}
