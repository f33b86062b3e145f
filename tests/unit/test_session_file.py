"""The session file (`up -f`): read into the API's own requests; a mistake is one line with the
file, the line and the field; the shipped JSON Schema is the parser's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gefyra import errors
from gefyra.core.model.session_file import SCHEMA, parse_session

GOOD = """\
namespace: shop
containers:
  api:
    build: ./api
    envFrom: deploy/api
    env: {LOG_LEVEL: debug, WORKERS: 4}
  worker:
    image: registry.example.com/worker:dev
    namespace: jobs
    volumesFrom: deploy/worker
    command: sh -c 'echo hi'
    ports: ["9000:9000"]
bridges:
  - {container: api, target: deploy/api, ports: ["8080:8080"]}
  - container: worker
    target: deploy/worker/main
    namespace: jobs
    ports: ["9000:9000"]
    match: {header-exact: "x-dev:me", path-prefix: /v2/}
    tlsSecret: worker-tls
  - {container: api, target: deploy/audit, ports: ["8080:8080"], mirror: true, protocol: grpc}
"""


def test_a_session_file_becomes_the_apis_requests() -> None:
    session = parse_session(GOOD, "gefyra.yaml")
    api, worker = session.containers["api"], session.containers["worker"]
    assert api.build == "./api" and api.request.env == {"LOG_LEVEL": "debug", "WORKERS": "4"}
    assert api.request.namespace == "shop" and api.request.env_from == "deploy/api"
    assert worker.request.namespace == "jobs" and worker.request.command == ["sh", "-c", "echo hi"]
    assert worker.request.ports == {"9000/tcp": 9000} and worker.request.volumes_from == "deploy/worker"
    global_, personal, mirror = session.bridges
    assert (global_.local, global_.target, global_.ports, global_.matches) == ("api", "deploy/api", {8080: 8080}, [])
    assert personal.namespace == "jobs" and [str(m) for m in personal.matches] == ["header-exact x-dev:me",
                                                                                  "path-prefix /v2/"]
    assert mirror.mirror and not global_.mirror and not personal.mirror and mirror.protocol == "grpc"
    assert (personal.tls_secret, personal.tls_verify, global_.tls_secret) == ("worker-tls", True, None)


@pytest.mark.parametrize(("change", "named"), [
    (("    build: ./api", "    biuld: ./api"), "gefyra.yaml:4: containers.api.biuld: unknown field"),
    (("namespace: shop", "namespace: Shop"), "gefyra.yaml:1: namespace 'Shop'"),
    (('ports: ["9000:9000"]\nbridges', 'ports: ["90000:9000"]\nbridges'), "gefyra.yaml:12: containers.worker.ports"),
    (("target: deploy/worker/main", "target: deployment/worker/main/x"), "gefyra.yaml:16: bridges[1].target"),
    (("{container: api,", "{container: apj,"), "gefyra.yaml:14: bridges[0].container: 'apj' is not a container"),
    (('"x-dev:me"', '"x_dev:me"'), "gefyra.yaml:19: bridges[1].match.header-exact"),
    (("    image: registry.example.com/worker:dev\n", ""), "gefyra.yaml:8: containers.worker: names neither"),
    (("bridges:", "bridgez:"), "gefyra.yaml:13: bridgez: unknown field"),
    (("mirror: true", 'mirror: "true"'), "gefyra.yaml:21: bridges[2].mirror: is not true or false"),
    (("    env: {LOG", "    env: {1LOG"), "gefyra.yaml:6: containers.api.env"),
    (("containers:\n", "containers: [\n"), "gefyra.yaml:4: not YAML"),
    (("tlsSecret: worker-tls", "tlsSecret: Worker_TLS"), "gefyra.yaml:15: bridges[1]: BridgeRequest.tls_secret"),
])
def test_a_mistake_is_one_line_with_the_file_the_line_and_the_field(change: tuple[str, str], named: str) -> None:
    text = GOOD.replace(*change, 1)
    assert text != GOOD
    with pytest.raises(errors.UsageError) as caught:
        parse_session(text, "gefyra.yaml")
    assert str(caught.value).startswith(named) and "\n" not in str(caught.value), str(caught.value)


def test_the_shipped_schema_is_the_parsers() -> None:
    from gefyra.core.model import session_file

    shipped = Path(session_file.__file__).with_name("session.schema.json")
    assert json.loads(shipped.read_text()) == SCHEMA
