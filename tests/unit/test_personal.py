"""Personal bridges' pure parts: conditions checked, the router's plan and nginx configuration, the
conflicts between bridges; and the operator's retry pauses."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from gefyra import errors
from gefyra.core.model import validation
from gefyra.core.model.crd import PortClaim, conflict
from gefyra.core.model.routing import Forward, Match, Route
from gefyra.core.spi.interceptor import InvalidRoute
from gefyra.operator import retry
from gefyra.plugins.interceptor_nginx import router as router_module
from gefyra.plugins.interceptor_nginx.board import ConfigBoard
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


def test_a_personal_port_takes_http2_and_passes_it_on_as_its_workload_speaks() -> None:
    personal = (((Match("header-exact", "a", "x-dev"),), "10.0.0.9:20001"),)
    http1 = router_config("r1", [Listener(8080, "tcp", ("10.0.0.5:8080",), personal=personal)])[1]
    h2c = router_config("r1", [Listener(8080, "tcp", ("10.0.0.5:8080",), personal=personal, http2=True)])[1]
    # Both ports take HTTP/1.x and prior-knowledge HTTP/2 from callers, each stream routed alone.
    assert "listen 8080;\n    http2 on;" in http1 and "listen 8080;\n    http2 on;" in h2c
    assert "proxy_pass http://$gefyra_8080_upstream;" in http1 and "grpc_pass" not in http1
    assert "grpc_pass grpc://$gefyra_8080_upstream;" in h2c and "proxy_pass" not in h2c.split("server {")[-1]


@pytest.mark.parametrize(("port", "http2"), [
    ({"port": 80, "appProtocol": "kubernetes.io/h2c"}, True),
    ({"port": 80, "appProtocol": "grpc", "name": "http"}, True),
    ({"port": 80, "appProtocol": "http", "name": "grpc"}, False),  # appProtocol wins over the name
    ({"port": 80, "name": "grpc-api"}, True),
    ({"port": 80, "name": "http2"}, True),
    ({"port": 80, "name": "grpcish"}, False),
    ({"port": 80, "name": "http"}, False),
    ({"port": 80}, False),
])
def test_a_service_port_says_whether_it_speaks_http2(port: dict[str, Any], http2: bool) -> None:
    assert router_module.speaks_http2(port) is http2


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


def test_a_mirror_copies_the_matching_requests_from_the_request_itself() -> None:
    mirrors = (((Match("path-prefix", "/orders/"),), "10.0.0.9:20003"), ((), "10.0.0.9:20004"))
    http1 = router_config("r1", [Listener(8080, "tcp", ("10.0.0.5:8080",), mirrors=mirrors)])[1]
    # Each flag is set in the request (the copy's own URI would not match the path condition)...
    assert "set $gefyra_copy_0 $gefyra_8080_m0;\n        mirror //gefyra-copy-0;" in http1
    assert "map $uri $gefyra_8080_m0_c0 {" in http1
    assert 'map "" $gefyra_8080_m1 {\n    default 0;\n    "" 1;\n}' in http1  # no condition: every request
    # ... a copy that does not match is dropped at once, a matching one goes to the copy relay with
    # the request's URI and where it is for (an address nginx sets, whatever the caller sent).
    assert "if ($gefyra_copy_0 != 1) {\n            return 204;\n        }" in http1
    assert "upstream gefyra_copy_relay {\n    server unix:/dev/shm/gefyra-copies.sock;" in http1
    assert "proxy_pass http://gefyra_copy_relay$request_uri;" in http1
    assert "proxy_set_header X-Gefyra-Copy-To 10.0.0.9:20003;" in http1
    assert "proxy_set_header X-Gefyra-Copy-Proto http/1.1;" in http1
    # Nothing takes requests away from the workload: with mirrors only, every answer is its own.
    assert "map \"\" $gefyra_8080_upstream {\n    default gefyra_8080_orig;\n}" in http1
    h2c = router_config("r1", [Listener(8080, "tcp", ("10.0.0.5:8080",), mirrors=mirrors, http2=True)])[1]
    assert "proxy_set_header X-Gefyra-Copy-Proto h2c;" in h2c
    plain = router_config("r1", [Listener(8080, "tcp", ("10.0.0.5:8080",), personal=mirrors[:1])])[1]
    assert "gefyra_copy_relay" not in plain


def test_mirrors_share_a_port_with_personal_bridges_but_not_with_a_global_one() -> None:
    mirror, personal, everything = (PortClaim(n, "server", frozenset({8080}), p)
                                    for n, p in (("m", True), ("p", True), ("g", False)))
    assert conflict(mirror, [personal]) is None and conflict(personal, [mirror]) is None
    assert "globally" in str(conflict(mirror, [everything])) and "personal" in str(conflict(everything, [mirror]))


def test_the_plan_puts_mirrors_beside_personal_routes() -> None:
    service = _service("web", {"app": "web"}, [{"name": "grpc", "port": 80, "targetPort": 8080}])
    routes = [Route("a", "server", (Forward(8080, "10.0.0.9", 20001),), (Match("header-exact", "a", "x-dev"),)),
              Route("m", "server", (Forward(8080, "10.0.0.9", 20002),), mirror=True)]
    layout = router_module.plan("r1", routes, TEMPLATE, [service], [_pod("web-1", "10.0.0.5", {"app": "web"})], "shop")
    (listener,) = layout.listeners
    assert [to for _, to in listener.personal] == ["10.0.0.9:20001"] and listener.mirrors == (((), "10.0.0.9:20002"),)
    assert listener.http2 and not listener.everything_to  # the Service port's name says gRPC


@pytest.mark.parametrize(("port", "protocol", "http2"), [
    ({"name": "web", "port": 80, "targetPort": 8080}, "h2c", True),
    ({"name": "web", "port": 80, "targetPort": 8080, "appProtocol": "grpc"}, "http", False),  # the bridge says
    ({"name": "web", "port": 80, "targetPort": 8080, "appProtocol": "grpc"}, "", True),  # the Service says
])
def test_a_bridges_protocol_wins_over_what_the_service_port_says(port: dict[str, Any], protocol: str,
                                                                  http2: bool) -> None:
    route = Route("a", "server", (Forward(8080, "10.0.0.9", 20001),), (Match("header-exact", "a", "x-dev"),),
                  protocol=protocol)
    layout = router_module.plan("r1", [route], TEMPLATE, [_service("web", {"app": "web"}, [port])], [], "shop")
    assert layout.listeners[0].http2 is http2


def test_a_route_that_no_service_leads_to_is_invalid() -> None:
    route = Route("a", "server", (Forward(9000, "10.0.0.9", 20001),), (Match("path-prefix", "/"),))
    with pytest.raises(InvalidRoute, match="no Service of namespace shop sends traffic to port 9000"):
        router_module.plan("r1", [route], TEMPLATE, [_service("other", {"app": "other"}, [{"port": 9000}])], [], "shop")


def _offered(board: ConfigBoard, ip: str) -> str | None:
    """The http config that the board offers the router pod at ``ip`` (None: nothing)."""
    if not board.knows(ip):
        return None
    answer = anyio.run(board.answer, ip, "", "", lambda: None)
    return str(json.loads(answer.body)["http"])


def test_changed_routes_are_offered_at_once_with_what_the_last_round_read() -> None:
    a = Route("a", "server", (Forward(8080, "10.0.0.9", 20001),), (Match("header-exact", "a", "x-dev"),))
    b = Route("b", "server", (Forward(8080, "10.0.0.9", 20002),), (Match("header-exact", "b", "x-dev"),))
    read = (TEMPLATE, [_service("web", {"app": "web"}, [{"port": 80, "targetPort": "http"}])],
            [_pod("web-1", "10.0.0.5", {"app": "web"})])
    board = ConfigBoard()
    router = router_module.Router("carrier", board)
    router._ips["r1"] = {"10.0.1.1"}  # the router's pods that its last round offered to
    router._offer_early("r1", (a, b), "shop")  # no round read anything yet: nothing to plan with
    assert _offered(board, "10.0.1.1") is None
    router._last["r1"] = ((a, b), read)
    router._offer_early("r1", (a, b), "shop")  # the same routes: this round's reads decide
    assert _offered(board, "10.0.1.1") is None
    router._offer_early("r1", (a,), "shop")  # b is gone: its route comes off before anything is read
    offered = _offered(board, "10.0.1.1")
    assert offered is not None and "10.0.0.9:20001" in offered and "10.0.0.9:20002" not in offered
    assert "10.0.0.5:8080" in offered


def test_routes_that_the_last_read_cannot_route_are_not_offered_early() -> None:
    board = ConfigBoard()
    router = router_module.Router("carrier", board)
    router._ips["r1"] = {"10.0.1.1"}
    router._last["r1"] = ((), (TEMPLATE, [], []))
    router._offer_early("r1", (Route("a", "server", (Forward(8080, "10.0.0.9", 20001),), ()),), "shop")
    assert _offered(board, "10.0.1.1") is None


def test_backoff_doubles_up_to_its_limit() -> None:
    assert [retry.backoff(n) for n in (1, 2, 3, 4, 5, 6, 7, 100)] == [1, 2, 4, 8, 16, 30, 30, 30]
