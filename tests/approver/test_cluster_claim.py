"""Issue 13, item 12, at the registration endpoint: a token minted for another cluster (a
webhook sharing the key, or a key tied to another cluster) approves nothing and writes no
approval; the audit says ``wrong_cluster``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from approver.files.jwks import FileKeySet
from approver.http.app import create_app
from approver.store import Store
from bootstrap_token import KeySet, SigningKey
from tests.approver.helpers import (
    AGENT_ID,
    CLUSTER,
    Clock,
    RecordingSink,
    mint_token,
    registration_body,
    settings,
)

REGISTER = "/api/v1/agents/register"
ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


async def _client(
    aiohttp_client: ClientFactory, jwks_file: Path, key_set: KeySet, store: Store, audit: Any
) -> TestClient[web.Request, web.Application]:
    app = create_app(
        settings(jwks_file=jwks_file),
        key_set=key_set,
        store=store,
        clock=Clock(),
        audit=audit,
        background=False,
    )
    return await aiohttp_client(app)


async def _register(client: TestClient[web.Request, web.Application], token: str) -> Any:
    response = await client.post(
        REGISTER, json=registration_body(AGENT_ID), headers={"X-Agent-API-Key": token}
    )
    return response.status, await response.json()


@pytest.mark.parametrize(
    ("cluster", "tie", "expected"),
    [
        (CLUSTER, None, (200, "bootstrap_token_accepted")),
        ("staging", None, (403, "wrong_cluster")),
        (CLUSTER, "staging", (403, "wrong_cluster")),
        (CLUSTER, CLUSTER, (200, "bootstrap_token_accepted")),
    ],
    ids=["accepted", "other-cluster-shared-key", "key-tied-elsewhere", "key-tied-here"],
)
async def test_cluster_claim_at_registration(
    aiohttp_client: ClientFactory,
    jwks_file: Path,
    signing_key: SigningKey,
    sqlite_store: Store,
    tmp_path: Path,
    cluster: str,
    tie: str | None,
    expected: tuple[int, str],
) -> None:
    keys: KeySet = KeySet([signing_key.public_key])
    if tie is not None:
        # As in production: the tie comes from the JWK's cluster member of the mounted file,
        # read by FileKeySet (certs-tooling jwks --cluster).
        path = tmp_path / "tied-jwks.json"
        path.write_text(json.dumps(keys.tied_to(tie).to_jwks()), encoding="utf-8")
        keys = FileKeySet(path)
        assert keys.cluster_of(signing_key.kid) == tie
    audit = RecordingSink()
    client = await _client(aiohttp_client, jwks_file, keys, sqlite_store, audit)
    status, body = await _register(client, mint_token(signing_key, cluster=cluster))
    assert (status, body["reason"]) == expected
    (event,) = [e for e in audit.events if e.event == "agent.register"]
    assert event.reason == expected[1]
    record = await sqlite_store.get_agent(AGENT_ID)
    if status == 200:
        assert record is not None
        assert record.status.value == "active"
    else:  # refused before any write
        assert record is None
