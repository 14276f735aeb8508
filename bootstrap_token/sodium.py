"""PyJWT's ``EdDSA`` algorithm for verification, backed by libsodium (PyNaCl).

PyJWT verifies Ed25519 through :mod:`cryptography` (OpenSSL); libsodium's
``crypto_sign_verify_detached`` does the same check in about half the CPU on these machines
(bench/approver_bench.py prints both). :class:`SodiumEdDSA` is registered as the ``EdDSA``
implementation of the approver's one :class:`jwt.api_jws.PyJWS` instance
(:mod:`bootstrap_token.token`), so PyJWT still parses the token and checks its header; only the
signature check runs in libsodium.

Equivalence (tests/bootstrap_token/test_sodium.py): every signature OpenSSL accepts for an
Ed25519 key, libsodium accepts too (RFC 8032 section 5.1.7 verification of a canonical
signature); libsodium additionally refuses small-order public keys and ``R`` values and
non-canonical encodings, which no signature of an honest key ever contains. So it never accepts
a token the :mod:`cryptography` verifier refuses.

Verification only: :meth:`SodiumEdDSA.sign` and the JWK conversions raise
:class:`NotImplementedError`; tokens are minted with :mod:`cryptography` (the webhook).
"""

from __future__ import annotations

from typing import Any, NoReturn

import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import Algorithm
from jwt.exceptions import InvalidKeyError

#: Bytes of an Ed25519 signature (RFC 8032 section 5.1.6).
SIGNATURE_BYTES = 64


class SodiumEdDSA(Algorithm):
    """``EdDSA`` with Ed25519 keys (RFC 8037), verified by libsodium.

    ``prepare_key`` takes a :mod:`cryptography` ``Ed25519PublicKey`` (what a
    :class:`~bootstrap_token.keys.KeySet` holds) or a ready ``nacl.signing.VerifyKey``; the
    libsodium key made from a ``cryptography`` key is kept, so a key is converted once.
    """

    def __init__(self) -> None:
        self._prepared: dict[bytes, nacl.signing.VerifyKey] = {}

    def prepare_key(self, key: Any) -> nacl.signing.VerifyKey:
        """The libsodium verify key for ``key``.

        Raises:
            jwt.exceptions.InvalidKeyError: not an Ed25519 public key.
        """
        if isinstance(key, nacl.signing.VerifyKey):
            return key
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidKeyError("EdDSA verification needs an Ed25519 public key")
        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        prepared = self._prepared.get(raw)
        if prepared is None:
            if len(self._prepared) >= 64:  # key sets hold a handful; never grow without bound
                self._prepared.clear()
            prepared = self._prepared[raw] = nacl.signing.VerifyKey(raw)
        return prepared

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        """True when ``sig`` is ``key``'s Ed25519 signature of ``msg`` (a wrong-length
        signature is False)."""
        if len(sig) != SIGNATURE_BYTES:
            return False
        try:
            key.verify(msg, sig)
        except nacl.exceptions.BadSignatureError:
            return False
        return True

    def sign(self, msg: bytes, key: Any) -> NoReturn:
        raise NotImplementedError("verification only: tokens are signed with cryptography")

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> NoReturn:
        raise NotImplementedError("verification only")

    @staticmethod
    def from_jwk(jwk: str | dict[str, Any]) -> NoReturn:
        raise NotImplementedError("verification only")
