"""``certs-tooling token inspect``: each check's outcome, the first failure's reason, exit codes."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import jwt
import pytest

from bootstrap_token import SigningKey
from certs_tooling.cli import main
from certs_tooling.layout import Layout
from certs_tooling.token_inspect import CHECKS, Status, inspect_token
from tests.certs_tooling.certs import T0, mint_token, run_cli

ALL = list(CHECKS)


@pytest.fixture
def folder(tmp_path: Path) -> Layout:
    assert main(["init", "--out", str(tmp_path), "--now", str(T0)]) == 0
    return Layout(tmp_path)


@pytest.fixture
def key(folder: Layout) -> SigningKey:
    return SigningKey.from_file(folder.signing_key)


def tamper(token: str) -> str:
    """Change the namespace claim without re-signing."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["namespace"] = "kube-system"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def inspect(folder: Layout, token: str, *extra: str, now: int = T0 + 60) -> int:
    args = ["token", "inspect", token, "--jwks", str(folder.jwks), "--now", str(now)]
    return main([*args, *extra])


def rows(out: str) -> dict[str, str]:
    """check name -> status, from the printed checks section."""
    section = out.split("checks:\n", 1)[1].split("result:", 1)[0]
    return {line.split()[1]: line.split()[0] for line in section.splitlines()}


def expected(failed: str | None) -> dict[str, str]:
    if failed is None:
        return dict.fromkeys(ALL, "PASS")
    index = ALL.index(failed)
    return {
        name: "PASS" if i < index else "FAIL" if i == index else "SKIP"
        for i, name in enumerate(ALL)
    }


class TestOutcomes:
    def test_good_token(
        self, folder: Layout, key: SigningKey, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A fresh token from the active key passes every check and exits 0."""
        token = mint_token(key, now=T0)
        assert inspect(folder, token) == 0
        out = capsys.readouterr().out
        assert rows(out) == expected(None)
        assert out.endswith("result: valid\n")
        assert f'  kid: "{key.kid}"' in out
        assert '  namespace: "streamspace"' in out
        assert "  exp: 1735693200  # 2025-01-01T01:00:00Z" in out
        assert "  PASS  lifetime   exp - iat = 3600s <= 86400s\n" in out

    @pytest.mark.parametrize(
        ("case", "failed", "reason"),
        [
            ("expired", "exp", "expired"),
            ("not-yet-valid", "nbf", "not_yet_valid"),
            ("tampered", "signature", "bad_signature"),
            ("unknown-kid", "kid", "unknown_kid"),
            ("garbage", "structure", "malformed"),
            ("hs256", "alg", "bad_alg"),
            ("wrong-issuer", "iss", "wrong_issuer"),
            ("wrong-audience", "aud", "wrong_audience"),
            ("too-long", "lifetime", "ttl_too_long"),
        ],
    )
    def test_bad_tokens(
        self,
        folder: Layout,
        key: SigningKey,
        capsys: pytest.CaptureFixture[str],
        case: str,
        failed: str,
        reason: str,
    ) -> None:
        """Each bad token fails exactly its check with its reason code: earlier checks PASS,
        later ones SKIP, exit 1."""
        token = mint_token(key, now=T0)
        extra: list[str] = []
        now = T0 + 60
        if case == "expired":
            now = T0 + 3600 + 30
        elif case == "not-yet-valid":
            now = T0 - 31
        elif case == "tampered":
            token = tamper(token)
        elif case == "unknown-kid":
            token = mint_token(SigningKey.generate(), now=T0)
        elif case == "garbage":
            token = "not-a-token"
        elif case == "hs256":
            token = jwt.encode({"iss": "x"}, "k" * 32, algorithm="HS256", headers={"kid": key.kid})
        elif case == "wrong-issuer":
            extra = ["--issuer", "someone-else"]
        elif case == "wrong-audience":
            extra = ["--audience", "other-approver"]
        elif case == "too-long":
            extra = ["--max-ttl", "600"]
        assert inspect(folder, token, *extra, now=now) == 1
        out = capsys.readouterr().out
        assert rows(out) == expected(failed)
        assert out.endswith(f"result: INVALID (reason {reason})\n")
        assert f"(reason {reason})" in next(line for line in out.splitlines() if "FAIL" in line)

    def test_wrong_typ_and_bad_claims_fail_their_rows(self, key: SigningKey) -> None:
        """A signed token with another typ fails `typ`; a signed token whose claims lack fields
        fails `claims` after the signature passed."""
        from bootstrap_token import KeySet, VerificationPolicy

        key_set = KeySet([key.public_key])
        policy = VerificationPolicy(issuer="agent-bootstrap-webhook", audience="agent-approver")
        wrong_typ = jwt.encode(
            {"iss": "x"}, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, "typ": "JWT"}
        )
        report = inspect_token(wrong_typ, key_set, policy, now=T0)
        assert [r.status for r in report.rows][:3] == [Status.PASS, Status.PASS, Status.FAIL]
        assert report.rows[2].check == "typ"
        assert report.reason == "malformed"
        bad_claims = jwt.encode(
            {"iss": "agent-bootstrap-webhook"},
            key.private_key,
            algorithm="EdDSA",
            headers={"kid": key.kid, "typ": "agent-bootstrap+jwt"},
        )
        report = inspect_token(bad_claims, key_set, policy, now=T0)
        by_check = {r.check: r.status for r in report.rows}
        assert by_check["signature"] is Status.PASS
        assert by_check["claims"] is Status.FAIL
        assert report.claims == {"iss": "agent-bootstrap-webhook"}


class TestInput:
    def test_token_from_stdin(
        self,
        folder: Layout,
        key: SigningKey,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """'-' reads the token from stdin (trailing newline ignored)."""
        monkeypatch.setattr("sys.stdin", io.StringIO(mint_token(key, now=T0) + "\n"))
        assert inspect(folder, "-") == 0
        assert capsys.readouterr().out.endswith("result: valid\n")

    def test_jwks_with_private_key_is_refused(
        self, folder: Layout, key: SigningKey, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A JWKS carrying a private member is refused (exit 1) and nothing is printed."""
        document = json.loads(folder.jwks.read_text())
        document["keys"][0]["d"] = "c2VjcmV0"
        leaky = tmp_path / "leaky.json"
        leaky.write_text(json.dumps(document))
        args = ["token", "inspect", mint_token(key, now=T0), "--jwks", str(leaky)]
        assert main(args) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "private key material" in captured.err

    def test_missing_jwks_flag_is_usage_error(self, key: SigningKey) -> None:
        """Without --jwks the command is a usage error (exit 2)."""
        assert main(["token", "inspect", mint_token(key, now=T0)]) == 2

    def test_output_never_holds_the_private_key(
        self, folder: Layout, key: SigningKey, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The report shows the token and public data only, never the signing key's bytes."""
        assert inspect(folder, mint_token(key, now=T0)) == 0
        out = capsys.readouterr().out
        private_raw = key.private_pem().split(b"\n")[1].decode()
        assert private_raw not in out


def test_real_subprocess_run(folder: Layout, key: SigningKey) -> None:
    """`python -m certs_tooling token inspect -` verifies a token from stdin as a real process;
    an expired one exits 1."""
    token = mint_token(key, now=T0)
    base = ["token", "inspect", "-", "--jwks", str(folder.jwks)]
    good = run_cli(*base, "--now", str(T0 + 1), stdin=token)
    assert good.returncode == 0, good.stderr
    assert good.stdout.endswith("result: valid\n")
    late = run_cli(*base, "--now", str(T0 + 7200), stdin=token)
    assert late.returncode == 1
    assert late.stdout.endswith("result: INVALID (reason expired)\n")
