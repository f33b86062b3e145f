"""`run --env-from`'s pure parts: the kubelet's rules for references, Services' variables, fields
and resources."""

from __future__ import annotations

from typing import Any

import pytest

from gefyra.client.environment import expand, pod_field, resource_field, service_variables


@pytest.mark.parametrize(("value", "expected"), [
    ("$(A)-$(B)", "one-two"),
    ("$$(A)", "$(A)"),  # $$ is a literal $
    ("$(MISSING)", "$(MISSING)"),  # an undefined one stays as written
    ("a=b=c\nINJECTED=surprise", "a=b=c\nINJECTED=surprise"),
    ("Grüße 🌉 $(A)", "Grüße 🌉 one"),
])
def test_references_expand_as_the_kubelet_does(value: str, expected: str) -> None:
    assert expand(value, {"A": "one", "B": "two"}) == expected


def _service(name: str, ip: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"clusterIP": ip, "ports": ports}}


def test_services_give_the_kubelets_variables() -> None:
    found = service_variables([
        _service("web-api", "10.96.0.5", [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]),
        _service("headless", "None", [{"port": 80}])])
    assert found["WEB_API_SERVICE_HOST"] == "10.96.0.5" and found["WEB_API_SERVICE_PORT"] == "80"
    assert found["WEB_API_SERVICE_PORT_HTTP"] == "80"
    assert found["WEB_API_PORT"] == "tcp://10.96.0.5:80"
    assert found["WEB_API_PORT_53_UDP"] == "udp://10.96.0.5:53" and found["WEB_API_PORT_53_UDP_ADDR"] == "10.96.0.5"
    assert not [k for k in found if k.startswith("HEADLESS")]


def test_fields_come_from_the_running_pod_and_are_unknown_without_one() -> None:
    pod = {"metadata": {"name": "web-1", "labels": {"app": "web"}}, "spec": {"nodeName": "n1"},
           "status": {"podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}]}}
    assert pod_field(pod, "shop", "metadata.name") == "web-1"
    assert pod_field(pod, "shop", "metadata.labels['app']") == "web"
    assert pod_field(pod, "shop", "status.podIPs") == "10.244.0.7"
    assert pod_field(None, "shop", "metadata.namespace") == "shop"
    assert pod_field(None, "shop", "status.podIP") is None


@pytest.mark.parametrize(("resources", "selector", "expected"), [
    ({"limits": {"cpu": "500m"}}, {"resource": "limits.cpu"}, "1"),  # rounded up
    ({"limits": {"cpu": "2"}}, {"resource": "limits.cpu", "divisor": "1m"}, "2000"),
    ({"limits": {"memory": "64Mi"}}, {"resource": "limits.memory", "divisor": "1Mi"}, "64"),
    ({}, {"resource": "limits.memory"}, None),
])
def test_resources_in_their_divisors_units(resources: dict[str, Any], selector: dict[str, Any], expected: str | None) -> None:
    assert resource_field({"resources": resources}, selector) == expected
