"""The chart's PrometheusRule and Grafana dashboard (issue 14 item 3): every PromQL expression
parses, and every metric it names is one the services export (a renamed series would otherwise
leave an alert that never fires, silently)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import promql_parser
import pytest
from prometheus_client import CollectorRegistry

from approver.metrics import SECURITY_REASONS, ApproverMetrics
from approver.pending_limits.gate import METRIC as PENDING_LIMITED
from tests.manifests import chart
from webhook.metrics import WebhookMetrics

ENABLED = {
    "metrics": {
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
        "dashboard": {"enabled": True},
    }
}


def exported() -> set[str]:
    """Every series name the two services can export (histograms with their ``_bucket``,
    ``_sum`` and ``_count``, counters with ``_total``)."""
    names: set[str] = {PENDING_LIMITED + "_total"}
    registries = [ApproverMetrics().registry, WebhookMetrics(registry=CollectorRegistry()).registry]
    for registry in registries:
        for family in registry.collect():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
            else:
                names.add(family.name)
    return names


def selectors(node: Any) -> Iterator[Any]:
    """Every vector selector in a parsed expression."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node
        return
    if isinstance(node, promql_parser.MatrixSelector):
        yield from selectors(node.vector_selector)
        return
    for attribute in ("lhs", "rhs", "expr", "param"):
        child = getattr(node, attribute, None)
        if child is not None:
            yield from selectors(child)
    for argument in getattr(node, "args", None) or []:
        yield from selectors(argument)


def metric_names(expression: str) -> set[str]:
    names = {s.name for s in selectors(promql_parser.parse(expression))}
    assert None not in names, f"a selector without a metric name in {expression}"
    return names


@pytest.fixture(scope="module")
def objects() -> list[chart.Obj]:
    return chart.render(ENABLED)


def rule_expressions(objects: list[chart.Obj]) -> dict[str, str]:
    (rule,) = chart.of_kind(objects, "PrometheusRule")
    return {r["alert"]: r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]}


def dashboard_expressions(objects: list[chart.Obj]) -> list[str]:
    (config_map,) = [
        o for o in chart.of_kind(objects, "ConfigMap") if "dashboard" in o["metadata"]["name"]
    ]
    dashboard = json.loads(config_map["data"]["agent-bootstrap.json"])
    # Grafana's variables are replaced before Prometheus sees a query.
    return [
        target["expr"].replace("$__rate_interval", "5m").replace("$namespace", "agent-bootstrap")
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def test_every_alert_parses_and_names_exported_series(objects: list[chart.Obj]) -> None:
    expressions = rule_expressions(objects)
    assert set(expressions) >= {
        "AgentBootstrapWebhookLeavingPodsUnchanged",
        "AgentBootstrapWebhookNotStamping",
        "AgentBootstrapApproverErrors",
        "AgentBootstrapApproverDatabaseNotReady",
        "AgentBootstrapPendingBacklogOld",
        "AgentBootstrapCertificateExpiring",
        "AgentBootstrapSigningKeyOld",
        "AgentBootstrapReloadFailing",
    }
    known = exported()
    for alert, expression in expressions.items():
        unknown = metric_names(expression) - known
        assert not unknown, f"{alert} names series nobody exports: {unknown}"
        assert f'namespace="{chart.NAMESPACE}"' in expression, alert


def test_every_dashboard_query_parses_and_names_exported_series(
    objects: list[chart.Obj],
) -> None:
    expressions = dashboard_expressions(objects)
    assert len(expressions) >= 14
    known = exported()
    used: set[str] = set()
    for expression in expressions:
        names = metric_names(expression)
        assert not names - known, f"{expression} names series nobody exports"
        used |= names
    # The backlog, approvals, time to approval, answers and the webhook's reviews are shown.
    assert {
        "agent_bootstrap_approver_pending_agents",
        "agent_bootstrap_approver_registrations_total",
        "agent_bootstrap_approver_time_to_approval_seconds_bucket",
        "agent_bootstrap_approver_responses_total",
        "agent_bootstrap_webhook_reviews_total",
    } <= used


def test_the_dashboard_carries_the_sidecars_label(objects: list[chart.Obj]) -> None:
    (config_map,) = [
        o for o in chart.of_kind(objects, "ConfigMap") if "dashboard" in o["metadata"]["name"]
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["agent-bootstrap.json"])
    assert dashboard["uid"] == "agent-bootstrap"


def test_the_rule_carries_the_operators_selector_labels(objects: list[chart.Obj]) -> None:
    (rule,) = chart.of_kind(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"


def test_off_by_default() -> None:
    objects = chart.render()
    assert chart.of_kind(objects, "PrometheusRule") == []
    assert not [
        o for o in chart.of_kind(objects, "ConfigMap") if "dashboard" in o["metadata"]["name"]
    ]


def test_a_misspelt_metric_is_caught() -> None:
    """The check itself can fail."""
    assert metric_names("sum(rate(agent_bootstrap_approver_registration_total[5m]))") - exported()
    with pytest.raises(ValueError, match="parenthesis"):
        promql_parser.parse("sum(rate(x[5m])")


def test_the_thresholds_are_values() -> None:
    values = {
        "metrics": {
            "prometheusRule": {"enabled": True, "pendingAgeSeconds": 120},
        }
    }
    expressions = rule_expressions(chart.render(values))
    assert re.search(r"> 120$", expressions["AgentBootstrapPendingBacklogOld"])


def test_the_copied_token_alert_counts_every_copy_and_replay_refusal(
    objects: list[chart.Obj],
) -> None:
    expression = rule_expressions(objects)["AgentBootstrapCopiedToken"]
    reasons = set(re.search(r'reason=~"([^"]+)"', expression).group(1).split("|"))  # type: ignore[union-attr]
    assert reasons <= set(SECURITY_REASONS)
    assert {
        "token_reused",
        "pod_address_mismatch",
        "pod_token_mismatch",
        "pod_uid_mismatch",
    } <= reasons
