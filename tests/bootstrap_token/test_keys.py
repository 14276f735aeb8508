"""Key loading, RFC 7638 thumbprints and JWKS documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from bootstrap_token import KeyLoadError, KeySet, SigningKey, jwk_thumbprint, public_jwk


class TestThumbprint:
    def test_rfc8037_appendix_a3_vector(self) -> None:
        """The thumbprint of RFC 8037's example Ed25519 key matches appendix A.3."""
        x = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        key = ed25519.Ed25519PublicKey.from_public_bytes(x)
        assert jwk_thumbprint(key) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"

    def test_public_jwk_members(self) -> None:
        """The public JWK has exactly the OKP members and no private part."""
        key = SigningKey.generate()
        jwk = public_jwk(key.public_key)
        assert set(jwk) == {"kty", "crv", "x", "kid", "use", "alg"}
        assert jwk["kid"] == key.kid


class TestSigningKey:
    def test_pem_round_trip(self) -> None:
        """A key written as PKCS#8 PEM loads back with the same kid."""
        key = SigningKey.generate()
        assert SigningKey.from_pem(key.private_pem()).kid == key.kid

    def test_refuses_non_ed25519(self) -> None:
        """An EC key is not a signing key for this project."""
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with pytest.raises(KeyLoadError, match="Ed25519"):
            SigningKey.from_pem(pem)

    def test_refuses_garbage(self) -> None:
        """Bytes that are not PEM give a KeyLoadError, not a library exception."""
        with pytest.raises(KeyLoadError):
            SigningKey.from_pem(b"not a key")

    def test_repr_hides_material(self) -> None:
        """repr() shows the kid and nothing of the private key."""
        key = SigningKey.generate()
        assert "private_key" not in repr(key)
        assert key.kid in repr(key)


class TestKeySet:
    def test_jwks_round_trip(self) -> None:
        """A JWKS made from two keys loads back with both kids."""
        a, b = SigningKey.generate(), SigningKey.generate()
        doc = KeySet([a.public_key, b.public_key]).to_jwks()
        loaded = KeySet.from_jwks(json.dumps(doc))
        assert set(loaded) == {a.kid, b.kid}

    def test_refuses_private_members(self) -> None:
        """A JWKS that carries a private key ('d') is refused, so it is never published."""
        key = SigningKey.generate()
        jwk = dict(public_jwk(key.public_key), d="AAAA")
        with pytest.raises(KeyLoadError, match="private"):
            KeySet.from_jwks({"keys": [jwk]})

    def test_refuses_kid_that_is_not_the_thumbprint(self) -> None:
        """A kid that does not derive from the key is refused (no kid aliasing)."""
        jwk = dict(public_jwk(SigningKey.generate().public_key), kid="primary")
        with pytest.raises(KeyLoadError, match="thumbprint"):
            KeySet.from_jwks({"keys": [jwk]})

    def test_refuses_other_key_types(self) -> None:
        """An RSA or EC JWK is refused."""
        with pytest.raises(KeyLoadError, match="Ed25519"):
            KeySet.from_jwks({"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]})

    @pytest.mark.parametrize("doc", [b"{", b"[]", b'{"keys": 3}', b'{"keys": ["x"]}'])
    def test_refuses_malformed_documents(self, doc: bytes) -> None:
        """Malformed JWKS documents raise KeyLoadError."""
        with pytest.raises(KeyLoadError):
            KeySet.from_jwks(doc)

    def test_pem_bundle(self, tmp_path: object) -> None:
        """Concatenated PEM public keys load as one key set."""
        a, b = SigningKey.generate(), SigningKey.generate()
        assert set(KeySet.from_public_pem(a.public_pem() + b.public_pem())) == {a.kid, b.kid}


class TestKeySetFromFile:
    """from_file tells a broken JWKS from a PEM file (issue 17: a jwks.json that is not JSON
    was reported as "not a PEM public key")."""

    @pytest.mark.parametrize(
        ("name", "content", "message"),
        [
            ("jwks.json", b"not json at all", "JWKS is not valid JSON (line 1, column 1)"),
            (
                "jwks.json",
                b'{"keys": [\n  {"kty": "OKP",}\n]}',
                "JWKS is not valid JSON (line 2, column 17)",
            ),
            ("keys", b'{"keys": [', "JWKS is not valid JSON (line 1, column 11)"),
            ("jwks.json", b'{"keys": "\xc3\x28"}', "JWKS is not valid JSON (not UTF-8 text)"),
            (
                "keys.pem",
                b"hello",
                "neither a JWKS (a JSON object with a 'keys' list) nor PEM public keys "
                "(-----BEGIN PUBLIC KEY-----)",
            ),
            (
                "keys.pem",
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "not a PEM public key",
            ),
        ],
    )
    def test_says_what_the_file_is_not(
        self, tmp_path: Path, name: str, content: bytes, message: str
    ) -> None:
        """The message names the format the file was read as, and where JSON broke; never the
        content."""
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(KeyLoadError) as caught:
            KeySet.from_file(path)
        assert str(caught.value) == message

    def test_jwks_and_pem_files_load(self, tmp_path: Path) -> None:
        """A JWKS under any name, and PEM public keys, load."""
        key = SigningKey.generate()
        (tmp_path / "keys").write_text(json.dumps(KeySet([key.public_key]).to_jwks()))
        (tmp_path / "keys.pem").write_bytes(key.public_pem())
        assert list(KeySet.from_file(tmp_path / "keys")) == [key.kid]
        assert list(KeySet.from_file(tmp_path / "keys.pem")) == [key.kid]
