"""Signing-key rotation: the key store's transitions, the JWKS invariant, and real tokens."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bootstrap_token import (
    MAX_TTL_SECONDS,
    KeySet,
    SigningKey,
    UnknownKeyId,
    VerificationPolicy,
    verify,
)
from certs_tooling import keyfolder
from certs_tooling.cli import main
from certs_tooling.keystore import (
    DEFAULT_LEEWAY_SECONDS,
    InvalidTransition,
    KeyStatus,
    KeyStoreState,
    RetireRefused,
    UnknownKey,
    activate_key,
    add_key,
    retire_key,
)
from certs_tooling.layout import Layout
from tests.certs_tooling.certs import DAY, T0, mint_token, run_cli

POLICY = VerificationPolicy(issuer="agent-bootstrap-webhook", audience="agent-approver")
#: First instant at which a key deactivated at ``t`` may be retired with the defaults.
WINDOW = MAX_TTL_SECONDS + DEFAULT_LEEWAY_SECONDS
KID_A = "A" * 43
KID_B = "B" * 43
KID_C = "C" * 43


def at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def states(state: KeyStoreState) -> dict[str, str]:
    return {r.kid: str(r.state) for r in state.keys}


def jwks_kids(layout: Layout) -> set[str]:
    return set(KeySet.from_file(layout.jwks))


def keys_cmd(layout: Layout, *args: str, now: int) -> int:
    return main(["keys", args[0], *args[1:], "--out", str(layout.root), "--now", str(now)])


@pytest.fixture
def folder(tmp_path: Path) -> Layout:
    """An init folder at T0 with key A active."""
    assert main(["init", "--out", str(tmp_path), "--now", str(T0)]) == 0
    return Layout(tmp_path)


def kid_of(layout: Layout) -> str:
    return SigningKey.from_file(layout.signing_key).kid


def pending_kid(layout: Layout) -> str:
    state = keyfolder.load(layout).state
    return next(r.kid for r in state.keys if r.state is KeyStatus.PENDING)


class TestTransitions:
    """The pure state machine (keystore.py)."""

    def test_first_key_is_active_then_pending(self) -> None:
        """The first key added to an empty store is active; later ones are pending."""
        state = add_key(KeyStoreState(), KID_A, now=at(T0))
        state = add_key(state, KID_B, now=at(T0 + 1))
        assert states(state) == {KID_A: "active", KID_B: "pending"}
        assert state.get(KID_A).activated_at == at(T0)
        assert [r.kid for r in state.published] == [KID_A, KID_B]

    def test_activate_moves_the_previous_active_to_inactive(self) -> None:
        """Activating B makes A inactive with deactivated_at = now."""
        state = add_key(add_key(KeyStoreState(), KID_A, now=at(T0)), KID_B, now=at(T0))
        state = activate_key(state, KID_B, now=at(T0 + 60))
        assert states(state) == {KID_A: "inactive", KID_B: "active"}
        assert state.get(KID_A).deactivated_at == at(T0 + 60)
        assert state.get(KID_B).activated_at == at(T0 + 60)

    def test_reactivating_an_inactive_key_rolls_back(self) -> None:
        """Activating the inactive A again makes B inactive and clears A's deactivated_at."""
        state = add_key(add_key(KeyStoreState(), KID_A, now=at(T0)), KID_B, now=at(T0))
        state = activate_key(state, KID_B, now=at(T0 + 60))
        state = activate_key(state, KID_A, now=at(T0 + 120))
        assert states(state) == {KID_A: "active", KID_B: "inactive"}
        assert state.get(KID_A).deactivated_at is None
        assert state.get(KID_B).deactivated_at == at(T0 + 120)

    @pytest.mark.parametrize(
        ("offset", "force", "allowed"),
        [
            (0, False, False),
            (WINDOW - 1, False, False),
            (WINDOW, False, True),
            (WINDOW + DAY, False, True),
            (0, True, True),
        ],
    )
    def test_retire_window(self, offset: int, force: bool, allowed: bool) -> None:
        """An inactive key may leave the JWKS only from deactivated_at + max TTL + leeway on,
        or earlier with force."""
        state = add_key(add_key(KeyStoreState(), KID_A, now=at(T0)), KID_B, now=at(T0))
        state = activate_key(state, KID_B, now=at(T0 + 60))
        now = at(T0 + 60 + offset)
        if allowed:
            retired = retire_key(state, KID_A, now=now, force=force)
            assert states(retired)[KID_A] == "retired"
            assert retired.get(KID_A).retired_at == now
            assert [r.kid for r in retired.published] == [KID_B]
        else:
            with pytest.raises(RetireRefused) as info:
                retire_key(state, KID_A, now=now, force=force)
            assert info.value.valid_until == at(T0 + 60 + WINDOW)

    @pytest.mark.parametrize("force", [False, True])
    def test_active_key_is_never_retired(self, force: bool) -> None:
        """Retiring the active key is refused, even with force."""
        state = add_key(KeyStoreState(), KID_A, now=at(T0))
        with pytest.raises(RetireRefused, match="is active; activate another key first"):
            retire_key(state, KID_A, now=at(T0 + 10 * DAY), force=force)

    def test_pending_key_retires_at_once(self) -> None:
        """A pending key never signed, so it may be retired immediately."""
        state = add_key(add_key(KeyStoreState(), KID_A, now=at(T0)), KID_B, now=at(T0))
        assert states(retire_key(state, KID_B, now=at(T0)))[KID_B] == "retired"

    def test_custom_window(self) -> None:
        """max_token_ttl and leeway set the window: 3600 + 0 s after deactivation."""
        state = add_key(add_key(KeyStoreState(), KID_A, now=at(T0)), KID_B, now=at(T0))
        state = activate_key(state, KID_B, now=at(T0))
        with pytest.raises(RetireRefused):
            retire_key(state, KID_A, now=at(T0 + 3599), max_token_ttl=3600, leeway=0)
        retired = retire_key(state, KID_A, now=at(T0 + 3600), max_token_ttl=3600, leeway=0)
        assert states(retired)[KID_A] == "retired"

    def test_refused_operations(self) -> None:
        """Operations that make no sense raise a typed error with a clear message."""
        state = add_key(add_key(KeyStoreState(), KID_A, now=at(T0)), KID_B, now=at(T0))
        state = retire_key(state, KID_B, now=at(T0))
        with pytest.raises(InvalidTransition, match="is retired; add a new key instead"):
            activate_key(state, KID_B, now=at(T0))
        with pytest.raises(InvalidTransition, match="already retired"):
            retire_key(state, KID_B, now=at(T0))
        with pytest.raises(InvalidTransition, match="already in the store"):
            add_key(state, KID_A, now=at(T0))
        with pytest.raises(UnknownKey, match="no key"):
            state.get(KID_C)
        with pytest.raises(UnknownKey) as short:
            state.get("AAA")  # prefixes shorter than 6 characters are not resolved
        assert str(short.value) == (
            "kid prefix 'AAA' is too short: give the kid or its first 6 characters or more "
            "(1 key starts with it; `keys list` shows them)"
        )
        with pytest.raises(UnknownKey) as none:
            state.get("abc")
        assert str(none.value) == (
            "kid prefix 'abc' is too short: give the kid or its first 6 characters or more "
            "(no key starts with it; `keys list` shows them)"
        )

    def test_prefix_resolves_and_ambiguity_is_refused(self) -> None:
        """A unique prefix of 6+ characters names a key; a shared prefix is ambiguous."""
        kid_a2 = "A" * 42 + "B"
        state = add_key(add_key(KeyStoreState(), KID_A, now=at(T0)), KID_B, now=at(T0))
        assert state.get("BBBBBB").kid == KID_B
        state = add_key(state, kid_a2, now=at(T0))
        with pytest.raises(UnknownKey) as caught:
            state.get("AAAAAA")
        assert str(caught.value) == (
            "kid prefix 'AAAAAA' is ambiguous: 2 keys start with it; give more characters"
        )

    def test_state_rejects_two_active_keys(self) -> None:
        """A state.json with two active keys does not load."""
        record = {"state": "active", "created_at": "2025-01-01T00:00:00Z"}
        document = {"version": 1, "keys": [{"kid": KID_A, **record}, {"kid": KID_B, **record}]}
        with pytest.raises(ValueError, match="more than one active key"):
            KeyStoreState.model_validate_json(json.dumps(document))


class TestRotationFlow:
    """The CLI on a real folder, with real tokens."""

    def test_add_publishes_before_use(self, folder: Layout) -> None:
        """keys add makes a pending 0600 key that is in jwks.json while signing.key is unchanged."""
        a = kid_of(folder)
        signing_before = folder.signing_key.read_bytes()
        assert keys_cmd(folder, "add", now=T0 + 10) == 0
        b = pending_kid(folder)
        assert jwks_kids(folder) == {a, b}
        assert folder.signing_key.read_bytes() == signing_before
        assert stat.S_IMODE(folder.key_file(b).stat().st_mode) == 0o600

    def test_activate_replaces_signing_key_and_keeps_old_published(self, folder: Layout) -> None:
        """keys activate B: signing.key becomes B, A turns inactive and stays in jwks.json."""
        a = kid_of(folder)
        assert keys_cmd(folder, "add", now=T0 + 10) == 0
        b = pending_kid(folder)
        assert keys_cmd(folder, "activate", b[:8], now=T0 + 20) == 0
        assert kid_of(folder) == b
        assert folder.signing_key.read_bytes() == folder.key_file(b).read_bytes()
        assert stat.S_IMODE(folder.signing_key.stat().st_mode) == 0o600
        assert jwks_kids(folder) == {a, b}
        record = keyfolder.load(folder).state.get(a)
        assert record.state is KeyStatus.INACTIVE
        assert record.deactivated_at == at(T0 + 20)

    def test_tokens_of_the_old_key_still_verify_after_rotation(self, folder: Layout) -> None:
        """A token minted by A before `keys add B` + `keys activate B` verifies against the new
        jwks.json, and so does a token minted by B."""
        a_key = SigningKey.from_file(folder.signing_key)
        token_a = mint_token(a_key, now=T0 + 5)
        assert keys_cmd(folder, "add", now=T0 + 10) == 0
        assert keys_cmd(folder, "activate", pending_kid(folder), now=T0 + 20) == 0
        token_b = mint_token(SigningKey.from_file(folder.signing_key), now=T0 + 30)
        key_set = KeySet.from_file(folder.jwks)
        assert verify(token_a, key_set, POLICY, now=T0 + 60).jti
        assert verify(token_b, key_set, POLICY, now=T0 + 60).iat == T0 + 30

    def test_retire_refused_then_allowed_then_tokens_fail(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """keys retire A is refused (exit 1) while A's tokens may be valid, allowed from
        deactivated_at + 86400 + leeway on, and afterwards A's tokens fail with unknown_kid."""
        a = kid_of(folder)
        token_a = mint_token(SigningKey.from_file(folder.signing_key), now=T0 + 5, ttl=DAY)
        assert keys_cmd(folder, "add", now=T0 + 10) == 0
        assert keys_cmd(folder, "activate", pending_kid(folder), now=T0 + 20) == 0
        jwks_before = folder.jwks.read_bytes()

        assert keys_cmd(folder, "retire", a, now=T0 + 20 + WINDOW - 1) == 1
        err = capsys.readouterr().err
        assert f"tokens signed by key {a} may be valid until 2025-01-02T00:05:20Z" in err
        assert folder.jwks.read_bytes() == jwks_before
        assert folder.key_file(a).exists()

        assert keys_cmd(folder, "retire", a, now=T0 + 20 + WINDOW) == 0
        assert a not in jwks_kids(folder)
        assert not folder.key_file(a).exists()
        with pytest.raises(UnknownKeyId) as info:
            verify(token_a, KeySet.from_file(folder.jwks), POLICY, now=T0 + 60)
        assert info.value.reason == "unknown_kid"

    def test_retire_active_is_refused(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Retiring the active key exits 1, even with --force, and keeps it published."""
        a = kid_of(folder)
        assert keys_cmd(folder, "retire", a, "--force", now=T0 + 100 * DAY) == 1
        assert "is active; activate another key first" in capsys.readouterr().err
        assert jwks_kids(folder) == {a}

    def test_force_retire_warns_loudly(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--force retires inside the window with a WARNING on stderr naming the overridden
        rule."""
        a = kid_of(folder)
        assert keys_cmd(folder, "add", now=T0 + 10) == 0
        assert keys_cmd(folder, "activate", pending_kid(folder), now=T0 + 20) == 0
        assert keys_cmd(folder, "retire", a, "--force", now=T0 + 30) == 0
        err = capsys.readouterr().err
        assert err.startswith("WARNING: --force: retired although tokens signed by key")
        assert "rejected from now on with unknown_kid" in err
        assert a not in jwks_kids(folder)

    def test_max_token_ttl_and_leeway_flags(self, folder: Layout) -> None:
        """--max-token-ttl 3600 --leeway 0 allows retiring one hour after deactivation."""
        a = kid_of(folder)
        assert keys_cmd(folder, "add", now=T0) == 0
        assert keys_cmd(folder, "activate", pending_kid(folder), now=T0) == 0
        flags = ("--max-token-ttl", "3600", "--leeway", "0")
        assert keys_cmd(folder, "retire", a, *flags, now=T0 + 3599) == 1
        assert keys_cmd(folder, "retire", a, *flags, now=T0 + 3600) == 0

    def test_jwks_invariant_through_a_full_cycle(self, folder: Layout) -> None:
        """At every step jwks.json = pending + active + inactive keys and holds signing.key."""
        now = T0
        for _ in range(3):
            now += 10
            assert keys_cmd(folder, "add", now=now) == 0
            now += 10
            assert keys_cmd(folder, "activate", pending_kid(folder), now=now) == 0
            state = keyfolder.load(folder).state
            assert jwks_kids(folder) == {r.kid for r in state.published}
            assert kid_of(folder) in jwks_kids(folder)
        now += WINDOW
        for record in keyfolder.load(folder).state.keys:
            if record.state is KeyStatus.INACTIVE:
                assert keys_cmd(folder, "retire", record.kid, now=now) == 0
        state = keyfolder.load(folder).state
        assert jwks_kids(folder) == {kid_of(folder)}
        assert [r.state for r in state.keys].count(KeyStatus.RETIRED) == 3
        assert sorted(p.stem for p in folder.keys_dir.glob("*.key")) == [kid_of(folder)]

    def test_list_shows_states_and_times(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """keys list prints kid, state, created/activated/deactivated/retired and when an
        inactive key becomes retirable."""
        a = kid_of(folder)
        assert keys_cmd(folder, "add", now=T0 + 60) == 0
        b = pending_kid(folder)
        assert keys_cmd(folder, "activate", b, now=T0 + 120) == 0
        capsys.readouterr()
        assert keys_cmd(folder, "list", now=T0 + 180) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == [
            "KID",
            "STATE",
            "CREATED",
            "ACTIVATED",
            "DEACTIVATED",
            "RETIRED",
            "RETIRABLE",
        ]
        assert lines[1].split() == [
            a,
            "inactive",
            "2025-01-01T00:00:00Z",
            "2025-01-01T00:00:00Z",
            "2025-01-01T00:02:00Z",
            "-",
            "2025-01-02T00:07:00Z",
        ]
        assert lines[2].split() == [
            b,
            "active",
            "2025-01-01T00:01:00Z",
            "2025-01-01T00:02:00Z",
            "-",
            "-",
            "-",
        ]

    def test_unknown_kid_is_exit_1(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Activating a kid the store does not know exits 1 with the kid in the message."""
        assert keys_cmd(folder, "activate", "Z" * 43, now=T0) == 1
        assert f"no key '{'Z' * 43}' (`keys list` shows the kids)" in capsys.readouterr().err

    def test_short_prefix_says_it_is_too_short(
        self, folder: Layout, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`keys activate abc` (issue 17) says the prefix is too short, not that there is no
        such key."""
        assert keys_cmd(folder, "activate", "abc", now=T0) == 1
        err = capsys.readouterr().err
        assert "keys activate: kid prefix 'abc' is too short: give the kid or its first 6" in err
        assert "no key" not in err.replace("no key starts", "")

    def test_keys_without_action_is_usage_error(self, folder: Layout) -> None:
        """`keys` with no action is a usage error (exit 2)."""
        assert main(["keys"]) == 2

    def test_interrupted_activation_is_repaired_by_rerun(self, folder: Layout) -> None:
        """If signing.key was not replaced after state.json (a crash), re-running
        `keys activate` of the now-active key writes it."""
        a_pem = folder.signing_key.read_bytes()
        assert keys_cmd(folder, "add", now=T0 + 10) == 0
        b = pending_kid(folder)
        assert keys_cmd(folder, "activate", b, now=T0 + 20) == 0
        folder.signing_key.write_bytes(a_pem)  # as if the process died before step 4
        assert keys_cmd(folder, "activate", b, now=T0 + 30) == 0
        assert kid_of(folder) == b
        assert keyfolder.load(folder).state.get(b).activated_at == at(T0 + 20)


class TestWriteOrder:
    def test_jwks_is_written_before_signing_key(
        self, folder: Layout, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """add writes the new key file, state.json, jwks.json; activate writes state.json,
        jwks.json and only then signing.key, so a key signs only once it is published."""
        renames: list[str] = []
        real_replace = os.replace

        def spy(src: str, dst: str | Path) -> None:
            renames.append(Path(dst).name)
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", spy)
        assert keys_cmd(folder, "add", now=T0 + 10) == 0
        b = pending_kid(folder)
        assert renames == [f"{b}.key", "state.json", "jwks.json"]
        renames.clear()
        assert keys_cmd(folder, "activate", b, now=T0 + 20) == 0
        assert renames == ["state.json", "jwks.json", "signing.key"]
        renames.clear()
        assert keys_cmd(folder, "activate", b, now=T0 + 30) == 0
        assert renames == ["state.json", "jwks.json"]  # signing.key unchanged: not rewritten


class TestLegacyFolder:
    def test_folder_without_store_is_adopted(self, folder: Layout) -> None:
        """A folder with signing.key but no keys/state.json is adopted: its key becomes the
        active key of a new store on the first change."""
        a = kid_of(folder)
        folder.key_state.unlink()
        folder.key_file(a).unlink()
        assert keys_cmd(folder, "add", now=T0 + 10) == 0
        state = keyfolder.load(folder).state
        assert state.get(a).state is KeyStatus.ACTIVE
        assert folder.key_file(a).read_bytes() == folder.signing_key.read_bytes()
        assert len(jwks_kids(folder)) == 2

    def test_empty_folder_is_a_clear_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """keys add in a folder without init exits 1 and says to run init."""
        assert main(["keys", "add", "--out", str(tmp_path)]) == 1
        assert "run `certs-tooling init` first" in capsys.readouterr().err


def test_real_subprocess_run(folder: Layout) -> None:
    """`python -m certs_tooling keys add|activate|list|retire` work as real processes."""
    added = run_cli("keys", "add", "--out", str(folder.root))
    assert added.returncode == 0, added.stderr
    b = pending_kid(folder)
    activated = run_cli("keys", "activate", b, "--out", str(folder.root))
    assert activated.returncode == 0, activated.stderr
    listed = run_cli("keys", "list", "--out", str(folder.root))
    assert listed.returncode == 0
    assert f"{b}  active" in listed.stdout
    retired = run_cli("keys", "retire", b, "--out", str(folder.root))
    assert retired.returncode == 1
    assert "is active" in retired.stderr


class TestDashKid:
    @pytest.mark.parametrize("command", ["activate", "retire"])
    def test_kid_starting_with_a_dash_is_a_kid(
        self, folder: Layout, command: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A kid that begins with '-' (one in 32 do) is taken as KID, not as an option."""
        dash_kid = "-" + "A" * 42
        code = main(["keys", command, dash_kid, "--out", str(folder.root), "--now", str(T0)])
        err = capsys.readouterr().err
        assert code == 1  # refused as an unknown key, not a usage error (2)
        assert "usage:" not in err
        assert dash_kid in err
