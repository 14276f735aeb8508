"""The admin API, the audit API and the credential review over HTTP (aiohttp test client)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from approver.config import ApproverSettings
from approver.domain.records import OwnerEvidence
from approver.files.tokens import TokenFile
from approver.http.app import create_app
from approver.http.app_keys import ADMIN_TOKENS_KEY, STORE_KEY
from approver.store import Store
from bootstrap_token import KeySet, SigningKey
from tests.approver.helpers import (
    AGENT_ID,
    AGENT_ID_PREFIX,
    GENERATE_NAME,
    OWNER_UID,
    SECOND_AGENT_ID,
    Clock,
    RecordingSink,
    mint_token,
    registration_body,
    settings,
)

ADMIN = "/api/v1/admin/agents"
AUDIT = "/api/v1/audit"
REVIEW = "/api/v1/agents/review"
REGISTER = "/api/v1/agents/register"
ALICE = "alice-admin-token-0123456789"
CONTROL_PLANE = "control-plane-review-token-0123"

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    admin = tmp_path / "admin-tokens"
    admin.write_text(f"alice:{ALICE}\n", encoding="utf-8")
    review = tmp_path / "review-tokens"
    review.write_text(f"streamspace:{CONTROL_PLANE}\n", encoding="utf-8")
    return admin, review


@pytest.fixture
def approver_settings(jwks_file: Path, files: tuple[Path, Path]) -> ApproverSettings:
    return settings(jwks_file=jwks_file, admin_tokens_file=files[0], review_tokens_file=files[1])


@pytest.fixture
def audit() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory,
    approver_settings: ApproverSettings,
    key_set: KeySet,
    sqlite_store: Store,
    audit: RecordingSink,
) -> Client:
    app = create_app(
        approver_settings,
        key_set=key_set,
        store=sqlite_store,
        clock=Clock(),
        audit=audit,
        background=False,
    )
    return await aiohttp_client(app)


def alice() -> dict[str, str]:
    return {"Authorization": f"Bearer {ALICE}"}


async def register(
    client: Client, agent_id: str = AGENT_ID, *, key: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"X-Agent-API-Key": key} if key else {}
    response = await client.post(REGISTER, json=registration_body(agent_id), headers=headers)
    return response.status, await response.json()


async def get(client: Client, path: str, **params: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(path, params=params, headers=alice())
    return response.status, await response.json()


class TestList:
    async def test_filters(self, client: Client, signing_key: SigningKey) -> None:
        """status, namespace, method, owner and expired filter the listing."""
        await register(client, key=mint_token(signing_key))
        await register(client, SECOND_AGENT_ID)
        _, active = await get(client, ADMIN, status="active")
        assert [a["agentId"] for a in active["agents"]] == [AGENT_ID]
        _, ns = await get(client, ADMIN, namespace="streamspace", method="namespace")
        assert [a["agentId"] for a in ns["agents"]] == [AGENT_ID]
        _, owner = await get(client, ADMIN, owner=OWNER_UID)
        assert [a["owner"]["uid"] for a in owner["agents"]] == [OWNER_UID]
        _, fresh = await get(client, ADMIN, expired="false", status="pending")
        assert [a["agentId"] for a in fresh["agents"]] == [SECOND_AGENT_ID]
        agent = active["agents"][0]
        assert agent["apiKeyIssued"] is True
        assert "apiKeyHash" not in agent
        assert "credentialHash" not in agent

    async def test_paging(self, client: Client) -> None:
        """limit and nextCursor walk the whole list, oldest first, without repeats."""
        for n in range(7):
            await register(client, f"agent-{n}")
        seen: list[str] = []
        params = {"limit": "3"}
        while True:
            status, page = await get(client, ADMIN, **params)
            assert status == 200
            seen += [a["agentId"] for a in page["agents"]]
            if page["nextCursor"] is None:
                break
            params = {"limit": "3", "cursor": page["nextCursor"]}
        assert sorted(seen) == [f"agent-{n}" for n in range(7)]
        assert len(seen) == 7

    @pytest.mark.parametrize(
        ("params", "error"),
        [
            ({"status": "approved"}, "invalid_status"),
            ({"method": "magic"}, "invalid_method"),
            ({"limit": "0"}, "invalid_limit"),
            ({"cursor": "!!"}, "invalid_cursor"),
            ({"expired": "maybe"}, "invalid_expired"),
            ({"namepsace": "typo"}, "unknown_parameter"),
        ],
    )
    async def test_bad_parameters(self, client: Client, params: dict[str, str], error: str) -> None:
        """Bad filter values and unknown parameters get 400 with a code."""
        status, body = await get(client, ADMIN, **params)
        assert (status, body["error"]) == (400, error)


class TestActions:
    async def test_revoke_delete_and_their_events(
        self, client: Client, signing_key: SigningKey, audit: RecordingSink
    ) -> None:
        """Revoke makes an active agent inactive; delete removes the row; every call is a
        stored audit event with the actor."""
        await register(client, key=mint_token(signing_key))
        revoked = await client.post(f"{ADMIN}/{AGENT_ID}/revoke", headers=alice())
        assert (revoked.status, (await revoked.json())["agent"]["status"]) == (200, "inactive")
        again = await client.post(f"{ADMIN}/{AGENT_ID}/revoke", headers=alice())
        assert (await again.json())["agent"]["reason"] == "revoked_by_admin"
        deleted = await client.delete(f"{ADMIN}/{AGENT_ID}", headers=alice())
        assert (deleted.status, await deleted.json()) == (200, {"deleted": AGENT_ID})
        missing = await client.delete(f"{ADMIN}/{AGENT_ID}", headers=alice())
        assert missing.status == 404
        _, events = await get(client, AUDIT, actor="alice")
        assert [(e["event"], e["reason"]) for e in events["events"]] == [
            ("admin.revoke", "revoked_by_admin"),
            ("admin.revoke", "already_inactive"),
            ("admin.delete", "deleted_by_admin"),
            ("admin.delete", "agent_not_found"),
        ]

    async def test_revoke_of_pending_is_refused(self, client: Client) -> None:
        """Revoke applies to active agents only: 409 for a pending one."""
        await register(client)
        response = await client.post(f"{ADMIN}/{AGENT_ID}/revoke", headers=alice())
        assert (response.status, (await response.json())["error"]) == (
            409,
            "transition_not_allowed",
        )

    async def test_get_one(self, client: Client) -> None:
        """One agent by id, or 404."""
        await register(client)
        status, body = await get(client, f"{ADMIN}/{AGENT_ID}")
        assert (status, body["agent"]["status"]) == (200, "pending")
        assert (await get(client, f"{ADMIN}/nobody"))[0] == 404

    async def test_bulk_approve_one_owner(self, client: Client) -> None:
        """Bulk approval approves every pending agent of one controller owner whose owner was
        proven, no other: not one whose owner was recorded before evidence was tracked."""
        ids = [f"{AGENT_ID_PREFIX}-{GENERATE_NAME}b{n:04d}" for n in range(4)]
        for agent_id in ids:
            await register(client, agent_id)
        # Agents without a token have no owner; give two of them the one a verified but not
        # (yet) approvable token records (quota exceeded, auto-approval off), and a third an
        # owner recorded before migration 0006 (no evidence).
        async with client.app[STORE_KEY].transaction() as tx:
            proofs = [OwnerEvidence.LIVE_POD, OwnerEvidence.LIVE_POD, None]
            for agent_id, evidence in zip(ids[:3], proofs, strict=True):
                record = await tx.get_agent(agent_id, lock=True)
                assert record is not None
                await tx.update_agent(replace(record, owner_uid=OWNER_UID, owner_evidence=evidence))
        response = await client.post(
            f"{ADMIN}/bulk-approve", json={"ownerUid": OWNER_UID}, headers=alice()
        )
        assert response.status == 200
        body = await response.json()
        assert (sorted(body["approved"]), body["count"]) == (sorted(ids[:2]), 2)
        _, listing = await get(client, ADMIN, status="pending")
        assert sorted(a["agentId"] for a in listing["agents"]) == ids[2:]

    async def test_bulk_approve_one_deployment(self, client: Client) -> None:
        """By Deployment UID, or by name with its namespace: every pending agent of its
        ReplicaSets whose owner was proven; the owner rendered with its Deployment."""
        ids = [f"{AGENT_ID_PREFIX}-{GENERATE_NAME}d{n:04d}" for n in range(4)]
        for agent_id in ids:
            await register(client, agent_id)
        owners = ["rs-old-uid", "rs-new-uid", "rs-new-uid", "rs-new-uid"]
        evidence = [OwnerEvidence.LIVE_POD, OwnerEvidence.LIVE_POD, None, OwnerEvidence.TOKEN]
        deployments = ["web-uid", "web-uid", "web-uid", "db-uid"]
        async with client.app[STORE_KEY].transaction() as tx:
            for agent_id, owner, proof, deployment in zip(
                ids, owners, evidence, deployments, strict=True
            ):
                record = await tx.get_agent(agent_id, lock=True)
                assert record is not None
                await tx.update_agent(
                    replace(
                        record,
                        namespace="streamspace",
                        owner_kind="ReplicaSet",
                        owner_name=owner,
                        owner_uid=owner,
                        owner_deployment_name=deployment.removesuffix("-uid"),
                        owner_deployment_uid=deployment,
                        owner_evidence=proof,
                    )
                )
        _, listed = await get(client, ADMIN, deploymentUid="web-uid")
        assert sorted(a["agentId"] for a in listed["agents"]) == ids[:3]
        first = next(a for a in listed["agents"] if a["agentId"] == ids[0])
        assert first["owner"] == {
            "kind": "ReplicaSet",
            "name": "rs-old-uid",
            "uid": "rs-old-uid",
            "deployment": {"name": "web", "uid": "web-uid"},
            "evidence": "live_pod",
        }
        _, by_name = await get(client, ADMIN, deployment="web", namespace="streamspace")
        assert sorted(a["agentId"] for a in by_name["agents"]) == ids[:3]
        response = await client.post(
            f"{ADMIN}/bulk-approve", json={"deploymentUid": "web-uid"}, headers=alice()
        )
        assert response.status == 200
        assert sorted((await response.json())["approved"]) == ids[:2]
        response = await client.post(
            f"{ADMIN}/bulk-approve",
            json={"deployment": "db", "namespace": "streamspace"},
            headers=alice(),
        )
        assert (await response.json())["approved"] == ids[3:]
        _, pending = await get(client, ADMIN, status="pending")
        assert [a["agentId"] for a in pending["agents"]] == [ids[2]]

    @pytest.mark.parametrize(
        "body",
        [
            {"ownerUid": "rs", "deploymentUid": "web"},
            {"deployment": "web"},
            {"deployment": "Web_App", "namespace": "streamspace"},
            {"deploymentUid": ""},
            {"deploymentUid": "x" * 65},
        ],
        ids=["two workloads", "name without namespace", "not a name", "empty", "too long"],
    )
    async def test_bulk_approve_names_one_workload(
        self, client: Client, body: dict[str, str]
    ) -> None:
        """Exactly one of ownerUid, deploymentUid, deployment (with its namespace)."""
        response = await client.post(f"{ADMIN}/bulk-approve", json=body, headers=alice())
        assert (response.status, (await response.json())["error"]) == (400, "invalid_request")

    @pytest.mark.parametrize(
        "params",
        [
            {"deployment": "web"},
            {"deployment": "Web_App", "namespace": "streamspace"},
            {"deploymentUid": "x" * 65},
        ],
        ids=["name without namespace", "not a name", "uid too long"],
    )
    async def test_deployment_filters_that_cannot_match(
        self, client: Client, params: dict[str, str]
    ) -> None:
        """A Deployment filter that can never match is 400 invalid_filter."""
        status, body = await get(client, ADMIN, **params)
        assert (status, body["error"]) == (400, "invalid_filter")

    async def test_bulk_approve_needs_an_owner(self, client: Client) -> None:
        """The body must name the owner UID."""
        response = await client.post(f"{ADMIN}/bulk-approve", json={}, headers=alice())
        assert (response.status, (await response.json())["error"]) == (400, "invalid_request")


class TestAudit:
    async def test_listing_and_paging(self, client: Client, signing_key: SigningKey) -> None:
        """GET /api/v1/audit lists stored events with seq and hashes, filtered and paged."""
        await register(client, key=mint_token(signing_key))
        await client.post(
            REGISTER,
            json=registration_body(SECOND_AGENT_ID),
            headers={"X-Agent-Bootstrap-Token": "not-a-token"},
        )
        status, body = await get(client, AUDIT, event="agent.register")
        assert status == 200
        events = body["events"]
        assert [e["agent_id"] for e in events] == [AGENT_ID, SECOND_AGENT_ID]
        assert events[1]["prevHash"] == events[0]["hash"]
        _, security = await get(client, AUDIT, security="true")
        assert [e["reason"] for e in security["events"]] == ["malformed"]
        _, latest = await get(client, AUDIT, order="desc", limit="1")
        assert latest["next"] is not None
        _, older = await get(client, AUDIT, order="desc", limit="1", before=str(latest["next"]))
        assert older["events"][0]["seq"] == latest["next"] - 1

    async def test_needs_a_bearer(self, client: Client) -> None:
        """The audit log is for administrators only."""
        assert (await client.get(AUDIT)).status == 401


class TestReview:
    async def test_control_plane_reviews_an_agent_key(
        self, client: Client, signing_key: SigningKey
    ) -> None:
        """A reviewer token asks about an agent's key and learns its id and status."""
        status, answer = await register(client, key=mint_token(signing_key))
        assert status == 200
        key = answer["apiKey"]
        response = await client.post(
            REVIEW, json={"apiKey": key}, headers={"Authorization": f"Bearer {CONTROL_PLANE}"}
        )
        assert response.status == 200
        assert await response.json() == {
            "authenticated": True,
            "agentId": AGENT_ID,
            "status": "active",
            "namespace": "streamspace",
            "approvalMethod": "namespace",
            "reason": "ok",
        }
        by_header = await client.post(
            REVIEW, headers={"Authorization": f"Bearer {ALICE}", "X-Agent-API-Key": key}
        )
        assert (await by_header.json())["authenticated"] is True

    async def test_reviewer_token_is_not_an_admin_token(self, client: Client) -> None:
        """A review token cannot use the admin API, and review needs some token."""
        denied = await client.get(ADMIN, headers={"Authorization": f"Bearer {CONTROL_PLANE}"})
        assert denied.status == 401
        anonymous = await client.post(REVIEW, json={"apiKey": "aga_x"})
        assert anonymous.status == 401

    async def test_unknown_key(self, client: Client) -> None:
        """A key nobody holds is unauthenticated, with no agent."""
        response = await client.post(
            REVIEW, json={"apiKey": "aga_nope"}, headers={"Authorization": f"Bearer {ALICE}"}
        )
        assert await response.json() == {
            "authenticated": False,
            "agentId": None,
            "status": None,
            "namespace": None,
            "approvalMethod": None,
            "reason": "malformed_key",
        }


class TestTokenFile:
    def test_reread_when_the_file_changes(self, tmp_path: Path) -> None:
        """A changed tokens file is re-read (after the check interval); a broken edit keeps
        the tokens in use."""
        path = tmp_path / "tokens"
        path.write_text(f"alice:{ALICE}\n")
        now = [0.0]
        tokens = TokenFile(path, check_interval_seconds=1.0, monotonic=lambda: now[0])
        assert tokens.current().authenticate(ALICE) == "alice"
        path.write_text("bob:bob-admin-token-0123456789\n")
        os.utime(path, ns=(1, 10**9 * 12345))
        assert tokens.current().authenticate(ALICE) == "alice"  # within the interval
        now[0] = 2.0
        assert tokens.current().authenticate("bob-admin-token-0123456789") == "bob"
        assert tokens.current().authenticate(ALICE) is None
        path.write_text("broken:short\n")
        os.utime(path, ns=(1, 10**9 * 23456))
        now[0] = 4.0
        assert tokens.current().authenticate("bob-admin-token-0123456789") == "bob"

    def test_reload_is_logged_with_names_never_tokens(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A re-read logs the setting, the path, the count and which names came and went
        (issue 17: it took effect silently); no token appears, nor a broken line's content."""
        caplog.set_level(logging.INFO, logger="approver.files.tokens")
        path = tmp_path / "tokens"
        path.write_text(f"alice:{ALICE}\ncarol:carol-admin-token-0123456789\n")
        path.chmod(0o600)
        now = [0.0]
        tokens = TokenFile(
            path,
            setting="adminTokensFile (config file approver.yaml)",
            check_interval_seconds=1.0,
            monotonic=lambda: now[0],
        )
        path.write_text(f"alice:{ALICE}\nbob:bob-admin-token-0123456789\n")
        os.utime(path, ns=(1, 10**9 * 12345))
        now[0] = 2.0
        tokens.current()
        path.write_text("alice:alice-rotated-token-000000000\nbob:bob-admin-token-0123456789\n")
        os.utime(path, ns=(1, 10**9 * 23456))
        now[0] = 4.0
        tokens.current()
        path.write_text("broken:short-secret\n")
        os.utime(path, ns=(1, 10**9 * 34567))
        now[0] = 6.0
        tokens.current()
        setting = f"adminTokensFile (config file approver.yaml) {path}"
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            ("INFO", f"{setting} re-read: 2 token(s) (added bob; removed carol)"),
            ("INFO", f"{setting} re-read: 2 token(s) (same names, tokens changed)"),
            (
                "WARNING",
                f"{setting} changed but cannot be used (line 1: token shorter than 16 "
                "characters); keeping the 2 token(s) in use",
            ),
        ]
        for secret in (ALICE, "bob-admin-token", "alice-rotated", "short-secret"):
            assert secret not in caplog.text

    async def test_a_change_is_seen_without_a_request(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """follow() looks at the file in the background: the reload is logged although no
        request asked for the tokens."""
        caplog.set_level(logging.INFO, logger="approver.files.tokens")
        path = tmp_path / "tokens"
        path.write_text(f"alice:{ALICE}\n")
        path.chmod(0o600)
        tokens = TokenFile(path, check_interval_seconds=0.01)
        task = asyncio.create_task(tokens.follow())
        try:
            path.write_text(f"alice:{ALICE}\nbob:bob-admin-token-0123456789\n")
            os.utime(path, ns=(1, 10**9 * 12345))
            for _ in range(200):
                if "re-read" in caplog.text:
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
        assert f"adminTokensFile {path} re-read: 2 token(s) (added bob)" in caplog.text

    @pytest.mark.parametrize("mode", [0o644, 0o604, 0o660])
    def test_a_file_open_to_others_is_a_warning(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
    ) -> None:
        """A tokens file others (or its group, which this process does not need) may read is
        a warning naming the setting, the path and the mode, at start and at each re-read."""
        caplog.set_level(logging.WARNING, logger="approver.files.tokens")
        path = tmp_path / "tokens"
        path.write_text(f"alice:{ALICE}\n")
        path.chmod(mode)
        now = [0.0]
        tokens = TokenFile(path, setting="adminTokensFile", monotonic=lambda: now[0])
        expected = (
            f"adminTokensFile {path} has mode {mode:04o}: open to users other than its owner; "
            "make it owner-only (chmod 600), or in Kubernetes mount its Secret with "
            "defaultMode 0440 and the pod's fsGroup"
        )
        assert caplog.messages == [expected]
        path.write_text(f"alice:{ALICE}\nbob:bob-admin-token-0123456789\n")
        os.utime(path, ns=(1, 10**9 * 12345))
        now[0] = 2.0
        tokens.current()
        assert caplog.messages == [expected, expected]

    def test_an_owner_only_file_is_quiet(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="approver.files.tokens")
        path = tmp_path / "tokens"
        path.write_text(f"alice:{ALICE}\n")
        path.chmod(0o600)
        TokenFile(path)
        assert caplog.messages == []

    async def test_server_sees_a_rotated_admin_token(
        self, client: Client, files: tuple[Path, Path]
    ) -> None:
        """Rotating the mounted admin tokens file takes effect without a restart."""
        admin, _ = files
        admin.write_text("carol:carol-admin-token-0123456789\n")
        os.utime(admin, ns=(1, 10**9 * 99999))
        client.app[ADMIN_TOKENS_KEY]._checked = -10.0  # the check interval has passed
        new = await client.get(
            ADMIN, headers={"Authorization": "Bearer carol-admin-token-0123456789"}
        )
        assert new.status == 200
        old = await client.get(ADMIN, headers=alice())
        assert old.status == 401
