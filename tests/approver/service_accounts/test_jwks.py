"""The issuer's JWKS: parsing (which keys count, with which algorithm), and the cache over a
real loopback HTTP server (fetch counts, bounded refresh, rotation)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from approver.service_accounts import (
    JwksCache,
    JwksError,
    JwksUnavailable,
    OfflineVerifier,
    SaReason,
    SaTokenRefused,
    UrlSource,
    file_source,
    parse_jwks,
)
from tests.approver.helpers import NOW
from tests.approver.service_accounts.conftest import JwksServer
from tests.approver.service_accounts.issuer import AUDIENCE, ISSUER, Issuer, jwks


def doc(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


class TestParse:
    def test_kubernetes_document(self, rsa_issuer: Issuer, ec_issuer: Issuer) -> None:
        """RSA keys verify RS256, P-256 keys ES256, under the API server's kid."""
        keys = parse_jwks(json.dumps(jwks(rsa_issuer, ec_issuer)).encode())
        assert {k: v.algorithm for k, v in keys.items()} == {
            rsa_issuer.kid: "RS256",
            ec_issuer.kid: "ES256",
        }

    @pytest.mark.parametrize(
        ("curve", "alg"), [(ec.SECP384R1(), "ES384"), (ec.SECP521R1(), "ES512")]
    )
    def test_other_curves(self, curve: ec.EllipticCurve, alg: str) -> None:
        """P-384 and P-521 keys verify ES384 and ES512; without alg it follows the curve."""
        jwk = ECAlgorithm.to_jwk(ec.generate_private_key(curve).public_key(), as_dict=True)
        assert parse_jwks(doc({**jwk, "kid": "k"}))["k"].algorithm == alg

    def test_rsa_without_alg(self, rsa_issuer: Issuer) -> None:
        """An RSA JWK without alg verifies RS256, the API server's algorithm."""
        jwk = {k: v for k, v in rsa_issuer.jwk().items() if k != "alg"}
        assert parse_jwks(doc(jwk))[rsa_issuer.kid].algorithm == "RS256"

    @pytest.mark.parametrize(
        "make",
        [
            pytest.param(lambda i: {**i.jwk(), "kid": None}, id="no-kid"),
            pytest.param(lambda i: {**i.jwk(), "use": "enc"}, id="use-enc"),
            pytest.param(lambda i: {**i.jwk(), "alg": "PS256"}, id="rsa-alg-ps256"),
            pytest.param(
                lambda i: {
                    **OKPAlgorithm.to_jwk(
                        ed25519.Ed25519PrivateKey.generate().public_key(), as_dict=True
                    ),
                    "kid": "ed",
                },
                id="okp",
            ),
            pytest.param(
                lambda i: {
                    **RSAAlgorithm.to_jwk(
                        rsa.generate_private_key(
                            public_exponent=65537,
                            key_size=1024,  # noqa: S505 - the point: too small
                        ).public_key(),
                        as_dict=True,
                    ),
                    "kid": "small",
                },
                id="rsa-1024",
            ),
            pytest.param(
                lambda i: {
                    **ECAlgorithm.to_jwk(
                        ec.generate_private_key(ec.SECP384R1()).public_key(), as_dict=True
                    ),
                    "kid": "mismatch",
                    "alg": "ES256",
                },
                id="p384-claiming-es256",
            ),
        ],
    )
    def test_unusable_keys_are_skipped(
        self, rsa_issuer: Issuer, make: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Unusable keys are skipped with a warning; the usable key still loads."""
        with caplog.at_level(logging.WARNING):
            keys = parse_jwks(doc(make(rsa_issuer), rsa_issuer.jwk()))
        assert set(keys) == {rsa_issuer.kid}
        assert "skipped" in caplog.text

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b"not json", "not valid JSON"),
            (b"[]", "'keys' list"),
            (b'{"keys": {}}', "'keys' list"),
            (b'{"keys": [1]}', "not an object"),
            (b'{"keys": []}', "no usable"),
        ],
    )
    def test_unusable_documents(self, data: bytes, message: str) -> None:
        """A document that is not a JWKS, or has no usable key, is a JwksError."""
        with pytest.raises(JwksError, match=message):
            parse_jwks(data)

    @pytest.mark.parametrize("kind", ["rsa-private", "hmac"])
    def test_secret_material_refuses_the_document(self, rsa_issuer: Issuer, kind: str) -> None:
        """A private RSA JWK ('d') or a symmetric key ('k') makes the document unusable."""
        if kind == "hmac":
            jwk: dict[str, Any] = {"kty": "oct", "k": "c2VjcmV0", "kid": "h"}
        else:
            private = rsa_issuer.private_key
            assert isinstance(private, rsa.RSAPrivateKey)
            jwk = {**RSAAlgorithm.to_jwk(private, as_dict=True), "kid": "leak"}
        with pytest.raises(JwksError, match="private"):
            parse_jwks(doc(jwk, rsa_issuer.jwk()))


class TestCacheOverHttp:
    def cache(self, server: JwksServer, **options: Any) -> JwksCache:
        return JwksCache(UrlSource(server.url), source=server.url, **options)

    async def test_cached(self, jwks_server: JwksServer, rsa_issuer: Issuer) -> None:
        """Many verifications within refreshSeconds cost one fetch."""
        cache = self.cache(jwks_server, refresh_seconds=300)
        verifier = OfflineVerifier(jwks=cache, issuer=ISSUER, audience=AUDIENCE)
        for step in range(20):
            await verifier.verify(rsa_issuer.mint(), now=NOW + step * 10)
        assert jwks_server.fetches == cache.fetches == 1
        await verifier.verify(rsa_issuer.mint(now=NOW + 300), now=NOW + 300)
        assert jwks_server.fetches == 2  # older than refreshSeconds: fetched again

    async def test_concurrent_first_use_fetches_once(
        self, jwks_server: JwksServer, rsa_issuer: Issuer
    ) -> None:
        """Fifty concurrent first verifications share one fetch."""
        cache = self.cache(jwks_server)
        verifier = OfflineVerifier(jwks=cache, issuer=ISSUER, audience=AUDIENCE)
        token = rsa_issuer.mint()
        await asyncio.gather(*(verifier.verify(token, now=NOW) for _ in range(50)))
        assert jwks_server.fetches == 1

    async def test_rotation_new_kid_refreshes_once(
        self, jwks_server: JwksServer, rsa_issuer: Issuer, rsa_issuer_next: Issuer
    ) -> None:
        """A new kid appears: the first token naming it triggers exactly one refresh; unknown
        kids within the interval do not fetch again."""
        cache = self.cache(jwks_server, refresh_seconds=3600, min_refresh_interval_seconds=30)
        verifier = OfflineVerifier(jwks=cache, issuer=ISSUER, audience=AUDIENCE)
        await verifier.verify(rsa_issuer.mint(), now=NOW)
        jwks_server.set_keys(rsa_issuer, rsa_issuer_next)  # the API server rotates
        identity = await verifier.verify(rsa_issuer_next.mint(now=NOW + 60), now=NOW + 60)
        assert identity.pod_uid
        assert jwks_server.fetches == 2
        for n in range(10):  # a flood of random kids within the interval
            with pytest.raises(SaTokenRefused) as caught:
                await verifier.verify(
                    rsa_issuer.mint(now=NOW + 61, headers={"kid": f"random-{n}"}), now=NOW + 61
                )
            assert caught.value.reason is SaReason.UNKNOWN_KID
        assert jwks_server.fetches == 2
        with pytest.raises(SaTokenRefused):
            await verifier.verify(
                rsa_issuer.mint(now=NOW + 91, headers={"kid": "random-x"}), now=NOW + 91
            )
        assert jwks_server.fetches == 3  # the interval passed: one more refresh

    async def test_rotation_old_key_removed(
        self, jwks_server: JwksServer, rsa_issuer: Issuer, rsa_issuer_next: Issuer
    ) -> None:
        """Once the old key leaves the JWKS, its tokens are refused after the next refresh."""
        jwks_server.set_keys(rsa_issuer, rsa_issuer_next)
        cache = self.cache(jwks_server, refresh_seconds=300, min_refresh_interval_seconds=30)
        verifier = OfflineVerifier(jwks=cache, issuer=ISSUER, audience=AUDIENCE)
        await verifier.verify(rsa_issuer.mint(), now=NOW)
        jwks_server.set_keys(rsa_issuer_next)
        await verifier.verify(rsa_issuer.mint(now=NOW + 100), now=NOW + 100)  # still cached
        with pytest.raises(SaTokenRefused) as caught:
            await verifier.verify(rsa_issuer.mint(now=NOW + 300), now=NOW + 300)
        assert caught.value.reason is SaReason.UNKNOWN_KID
        await verifier.verify(rsa_issuer_next.mint(now=NOW + 300), now=NOW + 300)

    async def test_failed_refresh_keeps_the_last_keys(
        self, jwks_server: JwksServer, rsa_issuer: Issuer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A 503 from the JWKS URL keeps the last good keys and logs a warning."""
        cache = self.cache(jwks_server, refresh_seconds=60, min_refresh_interval_seconds=30)
        verifier = OfflineVerifier(jwks=cache, issuer=ISSUER, audience=AUDIENCE)
        await verifier.verify(rsa_issuer.mint(), now=NOW)
        jwks_server.status = 503
        with caplog.at_level(logging.WARNING):
            await verifier.verify(rsa_issuer.mint(now=NOW + 60), now=NOW + 60)
        assert jwks_server.fetches == 2
        assert "HTTP 503" in caplog.text

    async def test_never_loaded(self, jwks_server: JwksServer, rsa_issuer: Issuer) -> None:
        """No document ever loaded: sa_jwks_unavailable, and retries stay bounded."""
        jwks_server.status = 500
        cache = self.cache(jwks_server, min_refresh_interval_seconds=30)
        verifier = OfflineVerifier(jwks=cache, issuer=ISSUER, audience=AUDIENCE)
        for _ in range(5):
            with pytest.raises(SaTokenRefused) as caught:
                await verifier.verify(rsa_issuer.mint(), now=NOW)
            assert caught.value.reason is SaReason.JWKS_UNAVAILABLE
        assert jwks_server.fetches == 1
        with pytest.raises(JwksUnavailable):
            await cache.load(now=NOW + 1)

    async def test_oversized_document(self, jwks_server: JwksServer, rsa_issuer: Issuer) -> None:
        """A document over 256 KiB is not used."""
        jwks_server.document = {"keys": [rsa_issuer.jwk()], "padding": "x" * 300_000}
        cache = self.cache(jwks_server)
        with pytest.raises(JwksUnavailable):
            await cache.load(now=NOW)

    async def test_own_session_is_closed(self, jwks_server: JwksServer) -> None:
        """UrlSource closes the session it opened (idempotently)."""
        source = UrlSource(jwks_server.url)
        assert json.loads(await source())["keys"]
        await source.close()
        await source.close()


async def test_file_source_rotation(
    tmp_path: Path, rsa_issuer: Issuer, rsa_issuer_next: Issuer
) -> None:
    """A JWKS file rewritten by a ConfigMap update is re-read on an unknown kid."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(rsa_issuer)))
    cache = JwksCache(file_source(path), source=str(path), min_refresh_interval_seconds=30)
    verifier = OfflineVerifier(jwks=cache, issuer=ISSUER, audience=AUDIENCE)
    await verifier.verify(rsa_issuer.mint(), now=NOW)
    path.write_text(json.dumps(jwks(rsa_issuer_next)))
    await verifier.verify(rsa_issuer_next.mint(now=NOW + 30), now=NOW + 30)
    assert cache.kids == {rsa_issuer_next.kid}
    assert cache.fetches == 2
