"""Issue 13, item 12: the ``cluster`` claim is checked against the verifier's accepted clusters,
and a key tied to a cluster (its JWK's ``cluster`` member) signs for that cluster only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bootstrap_token import (
    BootstrapClaims,
    KeyLoadError,
    KeySet,
    SigningKey,
    VerificationPolicy,
    WrongCluster,
    mint,
    new_jti,
    verify,
)

NOW = 1_796_000_000
EU, US = SigningKey.generate(), SigningKey.generate()


def _token(key: SigningKey, cluster: str) -> str:
    claims = BootstrapClaims.model_validate(
        {
            "iss": "agent-bootstrap-webhook",
            "aud": "agent-approver",
            "iat": NOW,
            "nbf": NOW,
            "exp": NOW + 600,
            "jti": new_jti(),
            "cluster": cluster,
            "namespace": "streamspace",
            "serviceAccount": "streamspace-agent",
            "pod": {"generateName": "streamspace-k8s-agent-7d9f8b6c5-"},
            "admissionUid": "0f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f",
        }
    )
    return mint(claims, key, now=NOW)


def _policy(*clusters: str) -> VerificationPolicy:
    return VerificationPolicy(
        issuer="agent-bootstrap-webhook",
        audience="agent-approver",
        clusters=frozenset(clusters) if clusters else None,
    )


class TestAcceptedClusters:
    def test_accepted_cluster_verifies(self) -> None:
        claims = verify(
            _token(EU, "prod-eu-1"), KeySet([EU.public_key]), _policy("prod-eu-1"), now=NOW
        )
        assert claims.cluster == "prod-eu-1"

    def test_other_cluster_with_a_shared_key_is_refused(self) -> None:
        """The fault the issue reports: another cluster's webhook holds the same key."""
        token = _token(EU, "staging")
        with pytest.raises(WrongCluster) as info:
            verify(token, KeySet([EU.public_key]), _policy("prod-eu-1"), now=NOW)
        assert info.value.reason == "wrong_cluster"
        assert info.value.security_relevant is True

    def test_several_accepted(self) -> None:
        keys = KeySet([EU.public_key])
        policy = _policy("prod-eu-1", "prod-us-1")
        assert verify(_token(EU, "prod-us-1"), keys, policy, now=NOW).cluster == "prod-us-1"
        with pytest.raises(WrongCluster):
            verify(_token(EU, "prod-ap-1"), keys, policy, now=NOW)

    def test_cluster_names_compare_exactly(self) -> None:
        with pytest.raises(WrongCluster):
            verify(_token(EU, "Prod-EU-1"), KeySet([EU.public_key]), _policy("prod-eu-1"), now=NOW)


class TestKeysTiedToClusters:
    def keys(self) -> KeySet:
        return (
            KeySet([EU.public_key])
            .tied_to("prod-eu-1")
            .merged(KeySet([US.public_key]).tied_to("prod-us-1"))
        )

    def test_each_key_signs_for_its_own_cluster(self) -> None:
        policy = _policy("prod-eu-1", "prod-us-1")
        assert verify(_token(EU, "prod-eu-1"), self.keys(), policy, now=NOW).cluster == "prod-eu-1"
        assert verify(_token(US, "prod-us-1"), self.keys(), policy, now=NOW).cluster == "prod-us-1"

    def test_key_of_one_cluster_cannot_sign_for_another_accepted_one(self) -> None:
        """A webhook key leaked from prod-us-1 mints a token naming prod-eu-1: both are
        accepted clusters, but the key is tied to prod-us-1."""
        with pytest.raises(WrongCluster, match="signing key is tied to"):
            verify(_token(US, "prod-eu-1"), self.keys(), _policy("prod-eu-1", "prod-us-1"), now=NOW)

    def test_tie_holds_without_an_accepted_list(self) -> None:
        with pytest.raises(WrongCluster):
            verify(_token(US, "prod-eu-1"), self.keys(), _policy(), now=NOW)

    def test_untied_key_signs_for_any_accepted_cluster(self) -> None:
        keys = KeySet([EU.public_key])
        assert keys.cluster_of(EU.kid) is None
        assert verify(_token(EU, "anything"), keys, _policy(), now=NOW).cluster == "anything"


class TestJwksClusterMember:
    def test_round_trip(self) -> None:
        document = json.loads(json.dumps(KeySet([EU.public_key]).tied_to("prod-eu-1").to_jwks()))
        assert document["keys"][0]["cluster"] == "prod-eu-1"
        assert document["keys"][0]["kid"] == EU.kid
        assert KeySet.from_jwks(document).cluster_of(EU.kid) == "prod-eu-1"

    def test_untied_key_has_no_member(self) -> None:
        assert "cluster" not in KeySet([EU.public_key]).to_jwks()["keys"][0]

    @pytest.mark.parametrize("value", ["", 7, None, ["prod-eu-1"], True])
    def test_member_that_is_not_a_non_empty_string(self, value: Any) -> None:
        document = KeySet([EU.public_key]).to_jwks()
        document["keys"][0]["cluster"] = value
        with pytest.raises(KeyLoadError, match=r"keys\[0\] cluster is not a non-empty string"):
            KeySet.from_jwks(document)

    def test_one_key_tied_to_two_clusters_in_one_document(self) -> None:
        one = KeySet([EU.public_key]).tied_to("prod-eu-1").to_jwks()["keys"][0]
        two = dict(one, cluster="prod-us-1")
        with pytest.raises(KeyLoadError, match="tied to two clusters"):
            KeySet.from_jwks({"keys": [one, two]})

    def test_merging_conflicting_ties(self) -> None:
        with pytest.raises(KeyLoadError, match="tied to two clusters"):
            KeySet([EU.public_key]).tied_to("a").merged(KeySet([EU.public_key]).tied_to("b"))

    def test_merging_tied_and_untied_keeps_the_tie(self) -> None:
        merged = KeySet([EU.public_key]).merged(KeySet([EU.public_key]).tied_to("a"))
        assert merged.cluster_of(EU.kid) == "a"
        assert len(merged) == 1
