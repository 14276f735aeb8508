"""Hand-made DER for CSRs no library would write (X.690 definite-length encoding): enough to
build a PKCS #10 request with any subject and attributes and sign it with Ed25519."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return bytes([tag, size]) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + body


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def set_of(*items: bytes) -> bytes:
    return tlv(0x31, b"".join(items))


def oid(dotted: str) -> bytes:
    first, second, *rest = (int(p) for p in dotted.split("."))
    out = bytearray([40 * first + second])
    for arc in rest:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, bytes(out))


EXTENSION_REQUEST = "1.2.840.113549.1.9.14"


def cn(value: bytes, tag: int = 0x0C) -> bytes:
    """A Name with one CN whose value has DER ``tag`` (default UTF8String)."""
    return seq(set_of(seq(oid("2.5.4.3"), tlv(tag, value))))


def extension(dotted: str, value: bytes, *, critical: bool = False) -> bytes:
    return seq(oid(dotted), *([tlv(0x01, b"\xff")] if critical else []), tlv(0x04, value))


def extension_request(*extensions: bytes) -> bytes:
    return seq(oid(EXTENSION_REQUEST), set_of(seq(*extensions)))


def csr(
    key: ed25519.Ed25519PrivateKey,
    *,
    subject: bytes = b"\x30\x00",
    attributes: bytes = b"",
    spki: bytes | None = None,
) -> str:
    """A PEM CSR signed by ``key`` (its key info replaced by ``spki`` when given)."""
    info = spki or key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    request_info = seq(tlv(0x02, b"\x00"), subject, info, tlv(0xA0, attributes))
    signature = key.sign(request_info)
    der = seq(request_info, seq(oid("1.3.101.112")), tlv(0x03, b"\x00" + signature))
    return (
        "-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(der).decode("ascii")
        + "-----END CERTIFICATE REQUEST-----\n"
    )
