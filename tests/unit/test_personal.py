"""Personal bridges' pure parts: conditions checked, the router's plan and nginx configuration, the
conflicts between bridges; and the operator's retry pauses."""

from __future__ import annotations

from typing import Any

import pytest

from gefyra import errors
from gefyra.core.model import validation
from gefyra.core.model.routing import Forward, Match, Route
from gefyra.core.spi.interceptor import InvalidRoute
from gefyra.operator import retry
from gefyra.plugins.interceptor_nginx import router as router_module
from gefyra.plugins.interceptor_nginx.routing import Listener, condition_regex, router_config


@pytest.mark.parametrize(("kind", "header", "value", "problem"), [
    ("header-exact", "x-dev", "alice", None),
    ("header-regex", "X-User", "^(al|bo)b$", None),
    ("path-prefix", "", "/api/", None),
    ("path-regex", "", r"^/items/[0-9]+$", None),
    ("header-exact", "x_dev", "a", "no '_'"),
    ("header-exact", "", "a", "is not letters"),
    ("path-exact", "x-dev", "/a", "names no header"),
    ("path-prefix", "", "api", "does not start with '/'"),
    ("header-exact", "x-dev", "a\nb", "printable ASCII"),
    ("header-exact", "x-dev", "", "printable ASCII"),
    ("header-exact", "x-dev", "é", "printable ASCII"),
    ("header-exact", "x-dev", "x" * 257, "printable ASCII"),
    ("path-regex", "", "(a", "does not compile"),
    ("cookie-exact", "", "a", "is not one of"),
    ("header-exact", "x-dev", 5, "are text"),
])
def test_conditions_are_checked(kind: str, header: str, value: Any, problem: str | None) -> None:
    found = validation.match_problem(kind, header, value)
    assert (found is None) if problem is None else (found is not None and problem in found), found


def test_match_flags_read_name_and_value() -> None:
    assert validation.match_flag("x-dev:a:b", "--match-header-exact", "header-exact") == ("x-dev", "a:b")
    assert validation.match_flag("/api", "--match-path-prefix", "path-prefix") == ("", "/api")
    with pytest.raises(errors.UsageError, match="NAME:VALUE"):
        validation.match_flag("x-dev", "--match-header-exact", "header-exact")


@pytest.mark.parametrize(("match", "regex"), [
    (Match("header-exact", 'a"b\\c$d{}; x', "x-dev"), '^a\\"b\\\\c\\$d\\{\\}\\;\\ x$'),
    (Match("path-prefix", "/api/v1"), "^\\/api\\/v1"),
    (Match("path-regex", "^/items/[0-9]+$"), "^/items/[0-9]+$"),
])
def test_exact_and_prefix_values_are_matched_literally(match: Match, regex: str) -> None:
    assert condition_regex(match) == regex


def _personal_config() -> str:
    listener = Listener(8080, "tcp", ("10.0.0.5:8080", "10.0.0.6:8080"), personal=(
        ((Match("header-exact", 'a"; x', "x-dev"),), "10.0.0.9:20001"),
        ((Match("path-prefix", "/api/"), Match("header-exact", "b", "x-dev")), "10.0.0.9:20002")))
    return router_config("gefyra-router-abc", [listener, Listener(9000, "tcp", ("10.0.0.5:9000",))])[1]


def test_the_router_chooses_the_first_bridge_whose_conditions_all_hold() -> None:
    http = _personal_config()
    # A value cannot end the string it is quoted in: the quote and the semicolon stay escaped.
    assert 'map $http_x_dev $gefyra_8080_r0_c0 {\n    default 0;\n    "~^a\\\\\\"\\\\;\\\\ x$" 1;\n}' in http
    assert 'map "$gefyra_8080_r1_c0$gefyra_8080_r1_c1" $gefyra_8080_r1 {\n    default 0;\n    "11" 1;\n}' in http
    assert ('map "$gefyra_8080_r0$gefyra_8080_r1" $gefyra_8080_upstream {\n    default gefyra_8080_orig;\n'
            '    "~^1" gefyra_8080_r0;\n    "~^01" gefyra_8080_r1;\n}') in http
    assert "server 10.0.0.5:8080;\n    server 10.0.0.6:8080;\n    keepalive 32;" in http
    assert "proxy_set_header Connection $gefyra_connection;" in http and "return 204;" in http


def test_other_ports_pass_through_and_a_global_bridge_takes_every_connection() -> None:
    stream, http = router_config("r1", [Listener(9000, "tcp", ("10.0.0.5:9000",)), Listener(9001, "udp", ()),
                                        Listener(8080, "tcp", ("10.0.0.5:8080",), everything_to="10.0.0.9:20001")])
    assert http == ""
    assert "listen 9000;\n    proxy_pass gefyra_9000_tcp_orig;" in stream
    assert "upstream gefyra_9001_udp_orig {\n    server 127.0.0.1:9 down;\n}" in stream  # no pod ready: refused
    assert "listen 9001 udp;" in stream and "listen 8080;\n    proxy_pass 10.0.0.9:20001;" in stream


@pytest.mark.parametrize("listener", [
    Listener(8080, "tcp", ("10.0.0.5:8080; include /etc/passwd",)),
    Listener(8080, "udp", (), personal=(((Match("path-prefix", "/"),), "10.0.0.9:1"),)),
    Listener(70000, "tcp", ()),
    Listener(8080, "tcp", (), personal=(((Match("path-prefix", "no-slash"),), "10.0.0.9:1"),)),
])
def test_the_router_config_refuses_what_it_cannot_write_safely(listener: Listener) -> None:
    with pytest.raises(ValueError):
        router_config("r1", [listener])


def _service(name: str, selector: dict[str, str], ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop"}, "spec": {"selector": selector, "ports": ports}}


def _pod(name: str, ip: str, labels: dict[str, str], ready: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "server", "ports": [{"containerPort": 8080, "name": "http"},
                                                                  {"containerPort": 9000}]}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


TEMPLATE = {"metadata": {"labels": {"app": "web", "tier": "front"}},
            "spec": {"containers": [{"name": "server", "ports": [{"containerPort": 8080, "name": "http"},
                                                                 {"containerPort": 9000}]}]}}


def test_the_plan_reroutes_the_services_that_lead_to_a_bridged_port() -> None:
    routes = [Route("a", "server", (Forward(8080, "10.0.0.9", 20001),), (Match("header-exact", "a", "x-dev"),)),
              Route("b", "server", (Forward(8080, "10.0.0.9", 20002),), (Match("header-exact", "b", "x-dev"),))]
    services = [_service("web", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": "http"},
                                                 {"name": "echo", "port": 9000, "targetPort": 9000}]),
                _service("echo-only", {"app": "web"}, [{"port": 9000, "targetPort": 9000}]),
                _service("other", {"app": "other"}, [{"port": 80, "targetPort": 8080}]),
                # rerouted before: gefyra's key does not keep it from being recognised
                _service("web-alt", {"app": "web", router_module.ROUTER_LABEL: "r1"}, [{"port": 81, "targetPort": 8080}])]
    pods = [_pod("web-1", "10.0.0.5", {"app": "web", "tier": "front"}), _pod("web-2", "10.0.0.6", {"app": "web"}),
            _pod("web-3", "10.0.0.7", {"app": "web"}, ready=False), _pod("other", "10.0.0.8", {"app": "other"})]
    layout = router_module.plan("r1", routes, TEMPLATE, services, pods, "shop")
    assert sorted(layout.services) == ["web", "web-alt"]
    assert layout.routed == {"a": ["web", "web-alt"], "b": ["web", "web-alt"]}
    assert layout.services["web"] == [{"name": "http", "port": 8080, "protocol": "TCP"},
                                      {"name": "echo", "port": 9000, "protocol": "TCP"}]
    by_port = {listener.port: listener for listener in layout.listeners}
    assert by_port[8080].originals == ("10.0.0.5:8080", "10.0.0.6:8080")  # ready ones only
    assert [to for _, to in by_port[8080].personal] == ["10.0.0.9:20001", "10.0.0.9:20002"]  # in the routes' order
    assert by_port[9000].personal == () and not by_port[9000].everything_to


def test_a_route_that_no_service_leads_to_is_invalid() -> None:
    route = Route("a", "server", (Forward(9000, "10.0.0.9", 20001),), (Match("path-prefix", "/"),))
    with pytest.raises(InvalidRoute, match="no Service of namespace shop sends traffic to port 9000"):
        router_module.plan("r1", [route], TEMPLATE, [_service("other", {"app": "other"}, [{"port": 9000}])], [], "shop")


def test_backoff_doubles_up_to_its_limit() -> None:
    assert [retry.backoff(n) for n in (1, 2, 3, 4, 5, 6, 7, 100)] == [1, 2, 4, 8, 16, 30, 30, 30]
