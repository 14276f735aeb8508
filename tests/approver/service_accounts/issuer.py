"""A service-account token issuer for tests: tokens in the format the API server signs.

Keys and ``kid`` as kube-apiserver makes them (``pkg/serviceaccount/jwt.go``: ``kid`` is the
unpadded base64url SHA-256 of the public key's DER SubjectPublicKeyInfo; RS256 for RSA keys,
ES256 for P-256 keys), the JWKS as ``/openid/v1/jwks`` serves it, and the claims of a
kubelet-projected token bound to a pod (Kubernetes documentation, "Service account tokens").
The pod is StreamSpace's k8s-agent pod of ``tests/approver/helpers.py``.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.approver.helpers import NAMESPACE, NOW, POD_NAME, SERVICE_ACCOUNT

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "agent-approver"
POD_UID = str(uuid.uuid5(uuid.NAMESPACE_URL, f"pod/{NAMESPACE}/{POD_NAME}"))
SA_UID = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sa/{NAMESPACE}/{SERVICE_ACCOUNT}"))
NODE = "worker-1"
NODE_UID = str(uuid.uuid5(uuid.NAMESPACE_URL, "node/worker-1"))

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def kube_kid(public_key: Any) -> str:
    """kube-apiserver's key id: base64url(SHA-256(DER SubjectPublicKeyInfo)), unpadded."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


class Issuer:
    """One signing key of the cluster's service-account issuer."""

    def __init__(self, kind: str = "RSA", *, issuer: str = ISSUER) -> None:
        self.kind = kind
        self.issuer = issuer
        self.private_key: PrivateKey
        if kind == "RSA":
            self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.algorithm = "RS256"
        else:
            self.private_key = ec.generate_private_key(ec.SECP256R1())
            self.algorithm = "ES256"
        self.kid = kube_kid(self.private_key.public_key())

    def jwk(self) -> dict[str, Any]:
        """The public JWK as ``/openid/v1/jwks`` lists it."""
        public = self.private_key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            members = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            members = ECAlgorithm.to_jwk(public, as_dict=True)
        return {"use": "sig", "kid": self.kid, "alg": self.algorithm, **members}

    def claims(
        self,
        *,
        now: int = NOW,
        ttl: int = 3600,
        audience: str | list[str] = AUDIENCE,
        namespace: str = NAMESPACE,
        service_account: str = SERVICE_ACCOUNT,
        pod: tuple[str, str] | None = (POD_NAME, POD_UID),
        node: bool = True,
        **overrides: Any,
    ) -> dict[str, Any]:
        """The claims of a kubelet-projected, pod-bound token issued at ``now``."""
        kubernetes: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": service_account, "uid": SA_UID},
        }
        if pod is not None:
            kubernetes["pod"] = {"name": pod[0], "uid": pod[1]}
        if node:
            kubernetes["node"] = {"name": NODE, "uid": NODE_UID}
        claims: dict[str, Any] = {
            "aud": [audience] if isinstance(audience, str) else audience,
            "exp": now + ttl,
            "iat": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": kubernetes,
            "nbf": now,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
        }
        claims.update(overrides)
        return claims

    def mint(self, *, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        """A signed token with :meth:`claims` (overridable) and header ``{alg, kid}``."""
        return jwt.encode(
            self.claims(**claims),
            self.private_key,
            algorithm=self.algorithm,
            headers={"kid": self.kid, **(headers or {})},
        )


def jwks(*issuers: Issuer) -> dict[str, Any]:
    """The JWKS document of the given keys."""
    return {"keys": [i.jwk() for i in issuers]}
