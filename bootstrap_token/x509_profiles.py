"""KeyUsage values every certificate this project makes shares (RFC 5280 section 4.2.1.3;
always marked critical, as the section recommends): one place for nine flags each.

* :data:`LEAF_KEY_USAGE`: ``digitalSignature`` only. TLS 1.3 and ECDHE suites in TLS 1.2 sign
  with the leaf key and never encipher with it, so nothing else is needed by a serving
  certificate, a client certificate (the API server's, an agent's) or anything else we issue.
* :data:`CA_KEY_USAGE`: ``keyCertSign`` and ``cRLSign``: a CA that signs certificates and CRLs
  and nothing else.
"""

from __future__ import annotations

from cryptography import x509

LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)

CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
