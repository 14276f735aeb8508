"""The limits on unauthenticated pending registrations, pure (approver.domain.pending_limits):
token buckets on an injected clock, bounded memory, which registrations they apply to, how a
registration is attributed to a namespace bucket; and the ``pendingLimits`` settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from approver.config import ConfigError, load_settings
from approver.domain.credential_outcome import CredentialOutcome, Verdict
from approver.domain.credentials import presented_credentials
from approver.domain.decision import (
    Decision,
    DecisionPolicy,
    Effect,
    Facts,
    Outcome,
    Step,
    StoreView,
    decide,
)
from approver.domain.pending_limits import (
    NAMESPACE_FULL_RETRY_AFTER_SECONDS,
    NO_NAMESPACE,
    Limit,
    PendingLimiter,
    PendingLimitPolicy,
    PendingLimitReason,
    RateLimit,
    claimed_namespace,
    holds_bound_credential,
    limited_creation,
    namespace_bucket,
    namespace_full,
)
from approver.domain.records import AgentStatus, ApprovalMethod
from approver.domain.requests import RegistrationRequest
from approver.pending_limits.gate import pending_gate
from bootstrap_token import Expired, PodRef, PolicyViolation
from tests.approver.helpers import (
    AGENT_ID,
    AGENT_ID_PREFIX,
    NAMESPACE,
    POD_NAME,
    SECOND_POD_NAME,
    Clock,
    agent_record,
    registration_body,
    settings,
    streamspace_claims,
)

POLICY = PendingLimitPolicy(per_source=RateLimit(1.0, 3), overall=RateLimit(2.0, 5))
TRUSTED = frozenset({NAMESPACE, "agents-b"})


def limiter(policy: PendingLimitPolicy = POLICY) -> tuple[PendingLimiter, Clock]:
    clock = Clock(now=100.0)
    return PendingLimiter(policy, clock=clock), clock


class TestPerSource:
    def test_burst_then_refused_with_the_wait(self) -> None:
        """Three at once from one address, then the fourth waits for the next token (1 s)."""
        limits, _ = limiter()
        assert [limits.take("10.0.0.1") for _ in range(3)] == [None, None, None]
        refused = limits.take("10.0.0.1")
        assert refused is not None
        assert (refused.reason, refused.limit) == (PendingLimitReason.RATE_LIMITED, Limit.SOURCE)
        assert refused.retry_after_seconds == 1
        assert "10.0.0.1" not in refused.message  # figures only, never the request's values

    def test_refills_at_its_rate(self) -> None:
        """Half a second later half a token: still refused (wait rounded up to 1 s); a
        second later one passes, and only one."""
        limits, clock = limiter()
        for _ in range(3):
            limits.take("10.0.0.1")
        clock.now += 0.5
        assert limits.take("10.0.0.1") is not None
        clock.now += 0.5
        assert limits.take("10.0.0.1") is None
        assert limits.take("10.0.0.1") is not None

    def test_never_more_than_the_burst(self) -> None:
        """An address silent for an hour gets its burst again, not 3,600 tokens."""
        limits, clock = limiter()
        limits.take("10.0.0.1")
        clock.now += 3600
        assert [limits.take("10.0.0.1") is None for _ in range(4)] == [True, True, True, False]

    def test_retry_after_is_the_time_to_the_next_token(self) -> None:
        """At 0.1/s the wait for the next token is 10 s."""
        slow = PendingLimitPolicy(per_source=RateLimit(0.1, 1), overall=RateLimit(100, 100))
        limits, clock = limiter(slow)
        assert limits.take("a") is None
        refused = limits.take("a")
        assert refused is not None
        assert refused.retry_after_seconds == 10
        clock.now += 4
        refused = limits.take("a")
        assert refused is not None
        assert refused.retry_after_seconds == 6

    def test_addresses_are_separate(self) -> None:
        limits, _ = limiter()
        for _ in range(3):
            limits.take("10.0.0.1")
        assert limits.take("10.0.0.1") is not None
        assert limits.take("10.0.0.2") is None

    def test_unknown_address_shares_one_bucket(self) -> None:
        limits, _ = limiter()
        for _ in range(3):
            assert limits.take(None) is None
        assert limits.take(None) is not None

    def test_a_clock_going_back_adds_nothing(self) -> None:
        limits, clock = limiter()
        for _ in range(3):
            limits.take("a")
        clock.now -= 50
        assert limits.take("a") is not None


class TestOverall:
    def test_holds_across_addresses(self) -> None:
        """Five at once overall: the sixth address is refused though its own bucket is full,
        with the overall wait (1 token at 2/s: 1 s)."""
        limits, _ = limiter()
        assert [limits.take(f"10.0.0.{n}") for n in range(5)] == [None] * 5
        refused = limits.take("10.0.0.99")
        assert refused is not None
        assert (refused.limit, refused.retry_after_seconds) == (Limit.OVERALL, 1)

    def test_a_refused_address_takes_nothing_from_the_others(self) -> None:
        """One flooding address uses only its own burst of the overall bucket: its refused
        attempts take no overall token."""
        limits, _ = limiter()
        for _ in range(100):
            limits.take("flood")
        assert [limits.take(f"10.0.0.{n}") for n in range(2)] == [None, None]
        assert limits.take("10.0.0.9") is not None

    def test_refills_at_its_rate(self) -> None:
        limits, clock = limiter()
        for n in range(5):
            limits.take(f"s{n}")
        clock.now += 1.0
        assert [limits.take(f"t{n}") is None for n in range(3)] == [True, True, False]


class TestMemory:
    def test_tracked_sources_are_bounded_oldest_forgotten(self) -> None:
        """At most trackedSources addresses are kept; the least recently seen goes first and
        comes back with a full bucket, while a recently seen one keeps its state."""
        policy = PendingLimitPolicy(
            per_source=RateLimit(0.001, 1), overall=RateLimit(1000, 1000), tracked_sources=3
        )
        limits, _ = limiter(policy)
        for source in ("a", "b", "c"):
            assert limits.take(source) is None
        assert limits.take("a") is not None  # a: seen again, now the most recent
        assert limits.take("d") is None  # b (least recent) forgotten
        assert limits.tracked == 3
        assert limits.take("a") is not None  # still tracked: still empty
        assert limits.take("b") is None  # forgotten: as if refilled

    def test_a_flood_of_addresses_stays_bounded(self) -> None:
        policy = PendingLimitPolicy(
            per_source=RateLimit(1, 1), overall=RateLimit(1, 10), tracked_sources=100
        )
        limits, _ = limiter(policy)
        admitted = sum(limits.take(f"2001:db8::{n:x}") is None for n in range(10_000))
        assert limits.tracked == 100
        assert admitted == 10  # the overall bucket bounds what many addresses do together


class TestPolicyShape:
    @pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0), (float("inf"), 1)])
    def test_bad_rate(self, rate: float, burst: int) -> None:
        with pytest.raises(ValueError, match="rate limit"):
            RateLimit(rate, burst)

    def test_tracked_sources_at_least_one(self) -> None:
        with pytest.raises(ValueError, match="tracked_sources"):
            PendingLimiter(
                PendingLimitPolicy(RateLimit(1, 1), RateLimit(1, 1), tracked_sources=0),
                clock=Clock(),
            )


# --- which registrations -----------------------------------------------------------------------

POLICY_RULES = DecisionPolicy(auto_approve=True, agent_id_prefix=AGENT_ID_PREFIX)


def facts(
    *,
    agent_id: str = AGENT_ID,
    metadata: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    **changes: Any,
) -> Facts:
    request = RegistrationRequest.model_validate(registration_body(agent_id, metadata=metadata))
    pod_name = agent_id.removeprefix(AGENT_ID_PREFIX + "-")
    base: dict[str, Any] = {
        "request": request,
        "presented": presented_credentials(headers or {}),
        "pod_name": pod_name,
        "source_address": "10.0.0.1",
    }
    base.update(changes)
    return Facts(**base)


TOKEN_HEADERS = {"X-Agent-API-Key": "eyJhbGciOiJFZERTQSJ9.e30.c2ln"}


def outcome(**changes: Any) -> CredentialOutcome:
    values: dict[str, Any] = {
        "verdict": Verdict.REFUSED,
        "approval_method": ApprovalMethod.API_KEY,
        "reason": "api_key_platform_not_allowed",
    }
    values.update(changes)
    return CredentialOutcome(**values)


class TestWhichRegistrations:
    def test_no_credential_creating_is_limited(self) -> None:
        plain = facts()
        decision = decide(facts=plain, view=StoreView(), policy=POLICY_RULES)
        assert (decision.effect, decision.outcome) == (Effect.CREATE, Outcome.PENDING)
        assert limited_creation(decision, plain)

    def test_known_pending_agent_retrying_is_not_limited(self) -> None:
        """A retry of a pending agent is no creation."""
        plain = facts()
        known = agent_record(AgentStatus.PENDING, credential_hash=None)
        decision = decide(facts=plain, view=StoreView(agent=known), policy=POLICY_RULES)
        assert decision.effect is not Effect.CREATE
        assert not limited_creation(decision, plain)

    def test_approval_is_never_limited(self) -> None:
        claims = streamspace_claims()
        held = facts(headers=TOKEN_HEADERS, verification=claims)
        decision = Decision(Outcome.APPROVED, "x", Step.BOOTSTRAP_TOKEN, Effect.CREATE)
        assert not limited_creation(decision, held)

    def test_verified_token_for_this_pod_left_pending_is_not_limited(self) -> None:
        """A verified token naming the agent's pod, pending for another reason (quota, the
        live pod): a valid credential for this agent, never limited."""
        held = facts(headers=TOKEN_HEADERS, verification=streamspace_claims())
        assert holds_bound_credential(held)
        decision = Decision(Outcome.PENDING, "quota_exceeded", Step.BOOTSTRAP_TOKEN, Effect.CREATE)
        assert not limited_creation(decision, held)

    def test_verified_token_of_another_pod_is_no_credential_for_this_agent(self) -> None:
        """One token read from a pod annotation must not create records for invented ids."""
        other = streamspace_claims(pod=PodRef(name=SECOND_POD_NAME))
        held = facts(headers=TOKEN_HEADERS, verification=other)
        assert not holds_bound_credential(held)
        decision = decide(facts=held, view=StoreView(), policy=POLICY_RULES)
        assert decision.reason == "binding_not_provable"
        assert limited_creation(decision, held)

    def test_pod_namespace_mismatch_is_no_bound_credential(self) -> None:
        held = facts(
            headers=TOKEN_HEADERS,
            verification=streamspace_claims(),
            metadata={"podNamespace": "elsewhere"},
        )
        assert not holds_bound_credential(held)

    @pytest.mark.parametrize(
        "failure",
        [Expired("expired", claims=streamspace_claims()), PolicyViolation("untrusted")],
        ids=["expired", "untrusted"],
    )
    def test_token_that_did_not_verify_is_no_credential(self, failure: Exception) -> None:
        held = facts(headers=TOKEN_HEADERS, verification=failure)
        assert not holds_bound_credential(held)

    def test_authenticated_api_key_out_of_scope_is_a_credential(self) -> None:
        """A key whose secret matched is a valid credential even when its scope refused."""
        held = facts(outcomes=(outcome(authenticated=True),))
        assert holds_bound_credential(held)

    def test_unauthenticated_outcome_is_no_credential(self) -> None:
        held = facts(outcomes=(outcome(reason="api_key_malformed"),))
        assert not holds_bound_credential(held)

    def test_authenticated_outcome_for_another_pod_is_no_credential(self) -> None:
        held = facts(
            outcomes=(
                outcome(
                    verdict=Verdict.ACCEPTED,
                    approval_method=ApprovalMethod.SERVICE_ACCOUNT,
                    reason="service_account_accepted",
                    authenticated=True,
                    pod_name=SECOND_POD_NAME,
                ),
            )
        )
        assert not holds_bound_credential(held)
        held = facts(
            outcomes=(outcome(authenticated=True, pod_name=POD_NAME, namespace=NAMESPACE),)
        )
        assert holds_bound_credential(held)


class TestNamespaceBucket:
    @pytest.mark.parametrize(
        ("metadata", "claim", "bucket"),
        [
            ({"namespace": NAMESPACE}, NAMESPACE, NAMESPACE),
            ({"podNamespace": "agents-b", "namespace": NAMESPACE}, "agents-b", "agents-b"),
            ({"podNamespace": None, "namespace": NAMESPACE}, NAMESPACE, NAMESPACE),
            ({"namespace": "invented-1"}, "invented-1", NO_NAMESPACE),
            ({"podNamespace": 7, "namespace": NAMESPACE}, 7, NO_NAMESPACE),
            ({"kubernetes": True}, None, NO_NAMESPACE),
            ({}, None, NO_NAMESPACE),
        ],
        ids=["namespace", "podNamespace first", "null podNamespace", "unknown", "not a string",
             "none", "empty"],
    )  # fmt: skip
    def test_bucket(self, metadata: dict[str, Any], claim: object, bucket: str | None) -> None:
        assert claimed_namespace(metadata) == claim
        assert namespace_bucket(metadata, TRUSTED) == bucket

    def test_cap(self) -> None:
        assert namespace_full(NAMESPACE, 9, 10) is None
        assert namespace_full(NAMESPACE, 9, None) is None
        full = namespace_full(NAMESPACE, 10, 10)
        assert full is not None
        assert (full.reason, full.limit) == (PendingLimitReason.NAMESPACE_FULL, Limit.NAMESPACE)
        assert full.retry_after_seconds == NAMESPACE_FULL_RETRY_AFTER_SECONDS
        assert "namespace streamspace" in full.message
        nowhere = namespace_full(NO_NAMESPACE, 12, 10)
        assert nowhere is not None
        assert "no known namespace" in nowhere.message


# --- settings ---------------------------------------------------------------------------------


class TestSettings:
    def test_defaults(self, jwks_file: Path) -> None:
        limits = settings(jwks_file=jwks_file).pending_limits
        assert limits.enabled
        assert (limits.per_source_per_second, limits.per_source_burst) == (1.0, 10)
        assert (limits.overall_per_second, limits.overall_burst) == (20.0, 100)
        assert (limits.max_per_namespace, limits.tracked_sources) == (1000, 10_000)
        gate = pending_gate(settings(jwks_file=jwks_file))
        assert gate is not None
        assert gate.limiter.policy.per_source == RateLimit(1.0, 10)

    def test_disabled_means_no_gate(self, jwks_file: Path) -> None:
        assert (
            pending_gate(settings(jwks_file=jwks_file, pending_limits={"enabled": False})) is None
        )

    @pytest.mark.parametrize(
        ("key", "variable", "value"),
        [
            ("perSourceBurst", "PER_SOURCE_BURST", "0"),
            ("perSourcePerSecond", "PER_SOURCE_PER_SECOND", "0"),
            ("overallPerSecond", "OVERALL_PER_SECOND", "nan"),
            ("overallBurst", "OVERALL_BURST", "-5"),
            ("maxPerNamespace", "MAX_PER_NAMESPACE", "0"),
            ("trackedSources", "TRACKED_SOURCES", "many"),
        ],
    )
    def test_bad_value_names_the_key(
        self, monkeypatch: pytest.MonkeyPatch, key: str, variable: str, value: str
    ) -> None:
        """Refused at start (exit 2), naming the key and its variable, never the value."""
        env = f"AGENT_BOOTSTRAP_APPROVER_PENDING_LIMITS__{variable}"
        monkeypatch.setenv(env, value)
        with pytest.raises(ConfigError) as info:
            load_settings(environ={})
        message = str(info.value)
        assert f"pendingLimits.{key}" in message
        assert env in message

    def test_from_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "approver.yaml"
        path.write_text("pendingLimits:\n  maxPerNamespace: null\n  perSourceBurst: 3\n")
        limits = load_settings(config_file=path, environ={}).pending_limits
        assert (limits.max_per_namespace, limits.per_source_burst) == (None, 3)

    def test_unknown_key_in_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "approver.yaml"
        path.write_text("pendingLimits:\n  perSource: 3\n")
        with pytest.raises(ConfigError, match=r"pendingLimits\.perSource"):
            load_settings(config_file=path, environ={})
