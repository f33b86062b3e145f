"""A session file (``gefyra up -f gefyra.yaml``): the local containers and bridges of a
developer's session in one YAML file, in the style of a Compose file::

    namespace: shop                      # the default of every container and bridge
    containers:
      api:
        build: ./api                     # a build context (the engine builds it), or: image: myapp:dev
        envFrom: deploy/api
        env: {LOG_LEVEL: debug}
      worker:
        image: registry.example.com/worker:dev
        volumesFrom: deploy/worker
    bridges:
      - {container: api, target: deploy/api, ports: ["8080:8080"]}
      - {container: worker, target: deploy/worker, ports: ["9000:9000"], match: {header-exact: "x-dev:me"}}

Every field is checked as the command line checks its flag, and a mistake is one line naming the
file, the line and the field (``gefyra.yaml:7: containers.api.imgae: unknown field``). The fields
are those of :data:`SCHEMA` (shipped as ``session.schema.json`` for editors)."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from gefyra import errors
from gefyra.core.model import validation
from gefyra.core.model.requests import BridgeRequest, RunRequest
from gefyra.core.model.routing import MATCH_KINDS, PROTOCOLS, Match

_WORKLOAD = {"type": "string", "pattern": "^(deploy|deployment|sts|statefulset|pod)/[^/]+(/[^/]+)?$",
             "description": "KIND/NAME[/CONTAINER] of the session's namespace"}
_WORDS = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
          "description": "shell syntax, or a list of words"}
#: The JSON Schema of a session file, shipped beside this module as ``session.schema.json`` (for
#: editors; a unit test keeps the file equal to this). The parser checks the same fields.
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "gefyra session file",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "gefyra.dev/v1alpha1"},
        "kind": {"const": "Session"},
        "namespace": {"type": "string", "description": "the default namespace of the containers and bridges"},
        "containers": {"type": "object", "additionalProperties": {"$ref": "#/$defs/container"},
                       "description": "local containers by name (`gefyra run`)"},
        "bridges": {"type": "array", "items": {"$ref": "#/$defs/bridge"}},
    },
    "$defs": {
        "container": {
            "type": "object", "additionalProperties": False,
            "oneOf": [{"required": ["image"]}, {"required": ["build"]}],
            "properties": {
                "image": {"type": "string"},
                "build": {"type": "string", "description": "a build context (a directory the container engine builds), "
                                                           "relative to the file"},
                "namespace": {"type": "string"},
                "env": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
                "envFrom": _WORKLOAD, "volumesFrom": _WORKLOAD, "resourcesFrom": _WORKLOAD,
                "volumes": {"type": "array", "items": {"type": "string", "description": "HOST:CONTAINER[:ro]"}},
                "ports": {"type": "array", "items": {"type": "string", "description": "[IP:]HOST:CONTAINER[/udp]"}},
                "command": _WORDS, "entrypoint": _WORDS,
            },
        },
        "bridge": {
            "type": "object", "additionalProperties": False, "required": ["container", "target", "ports"],
            "properties": {
                "container": {"type": "string", "description": "a container of this file"},
                "target": _WORKLOAD,
                "namespace": {"type": "string"},
                "ports": {"type": "array", "items": {"type": "string", "description": "REMOTE:LOCAL"}},
                "protocol": {"enum": list(PROTOCOLS), "description": "how the workload speaks on the ports, "
                             "for personal routing (default: what its Service port says)"},
                "mirror": {"type": "boolean", "description": "read-only: the workload keeps answering the "
                           "(matching) requests, and a copy of each comes to the container"},
                "tlsSecret": {"type": "string", "description": "HTTPS ports: the Secret (kubernetes.io/tls) with "
                              "the workload's certificate; the router ends TLS with it and routes each request"},
                "tlsInsecureSkipVerify": {"type": "boolean", "description": "with tlsSecret: do not check the "
                                          "workload's certificate when speaking TLS to it"},
                "match": {"type": "object", "additionalProperties": False,
                          "properties": {k: {"type": "string"} for k in MATCH_KINDS},
                          "description": "a personal bridge's conditions, e.g. header-exact: 'x-dev:me'"},
            },
        },
    },
}

_TOP = frozenset(SCHEMA["properties"])
_CONTAINER = frozenset(SCHEMA["$defs"]["container"]["properties"])
_BRIDGE = frozenset(SCHEMA["$defs"]["bridge"]["properties"])


@dataclasses.dataclass(frozen=True)
class SessionContainer:
    """A local container of the session: its run request (its image is ``build``'s once built)."""

    request: RunRequest
    #: A build context (a directory, relative to the file's), None for ``image``.
    build: str | None = None


@dataclasses.dataclass(frozen=True)
class SessionFile:
    path: str
    containers: dict[str, SessionContainer]
    bridges: list[BridgeRequest]


class _Reader:
    """Turns YAML nodes into checked values; every refusal names the file, the line and the field."""

    def __init__(self, path: str) -> None:
        self.path = path

    def where(self, node: yaml.Node, field: str) -> str:
        return f"{self.path}:{node.start_mark.line + 1}: {field}"

    def fail(self, node: yaml.Node, field: str, why: str, todo: str = "`gefyra apply --schema` prints the file's fields"
             ) -> errors.UsageError:
        return errors.UsageError(f"{self.where(node, field)}: {why}", todo)

    def mapping(self, node: yaml.Node, field: str, known: frozenset[str] | None = None) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, field, "is not a mapping")
        found: dict[str, yaml.Node] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if not isinstance(name, str) or name in found:
                raise self.fail(key, f"{field}.{name}" if field else str(name), "a repeated or unreadable key")
            if known is not None and name not in known:
                raise self.fail(key, f"{field}.{name}" if field else name,
                                f"unknown field (known: {', '.join(sorted(known))})")
            found[name] = value
        return found

    def value(self, node: yaml.Node) -> Any:
        return yaml.safe_load(yaml.serialize(node))

    def text(self, node: yaml.Node, field: str) -> str:
        value = self.value(node)
        if not isinstance(value, str):
            raise self.fail(node, field, "is not text")
        return value

    def flag(self, node: yaml.Node, field: str) -> bool:
        value = self.value(node)
        if not isinstance(value, bool):
            raise self.fail(node, field, "is not true or false")
        return value

    def texts(self, node: yaml.Node, field: str) -> list[str]:
        value = self.value(node)
        if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
            raise self.fail(node, field, "is not a list of text")
        return [str(v) for v in value]

    def checked(self, node: yaml.Node, field: str, check: Any, *args: Any) -> Any:
        """``check(value, where, *args)``, as the command line's flags are checked."""
        return check(self.value(node), self.where(node, field), *args)


def parse_session(text: str, path: str) -> SessionFile:
    """The session file ``path`` (its content ``text``); UsageError for any mistake."""
    reader = _Reader(path)
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise errors.UsageError(f"{path}{line}: not YAML: {getattr(exc, 'problem', None) or exc}",
                                "fix the file's syntax") from exc
    if root is None:
        raise errors.UsageError(f"{path}: is empty", "name containers and bridges in it (`gefyra apply --schema`)")
    top = reader.mapping(root, "", _TOP)
    for field, wanted in (("apiVersion", SCHEMA["properties"]["apiVersion"]["const"]),
                          ("kind", SCHEMA["properties"]["kind"]["const"])):
        if field in top and reader.value(top[field]) != wanted:
            raise reader.fail(top[field], field, f"is not {wanted}")
    namespace = reader.checked(top["namespace"], "namespace", validation.dns_label, "namespace") \
        if "namespace" in top else "default"
    containers = {name: _container(reader, name, node, namespace)
                  for name, node in (reader.mapping(top["containers"], "containers") if "containers" in top else {}).items()}
    bridges = []
    if "bridges" in top:
        if not isinstance(top["bridges"], yaml.SequenceNode):
            raise reader.fail(top["bridges"], "bridges", "is not a list")
        bridges = [_bridge(reader, i, node, namespace, containers) for i, node in enumerate(top["bridges"].value)]
    return SessionFile(path, containers, bridges)


def _container(reader: _Reader, name: str, node: yaml.Node, namespace: str) -> SessionContainer:
    field = f"containers.{name}"
    validation.dns_label(name, reader.where(node, field), "container name")
    spec = reader.mapping(node, field, _CONTAINER)
    if ("image" in spec) == ("build" in spec):
        raise reader.fail(node, field, "names neither or both of image and build", "give one of them")
    build = reader.text(spec["build"], f"{field}.build") if "build" in spec else None
    image = reader.checked(spec["image"], f"{field}.image", validation.image) if "image" in spec else "gefyra-build"
    env: dict[str, str] = {}
    if "env" in spec:
        for key, value in reader.mapping(spec["env"], f"{field}.env").items():
            env[key] = reader.text(value, f"{field}.env.{key}") if not isinstance(reader.value(value), int | float) \
                else str(reader.value(value))
            validation.env_name(key, reader.where(value, f"{field}.env"))
    workloads = {key: reader.checked(spec[key], f"{field}.{key}", validation.workload)
                 for key in ("envFrom", "volumesFrom", "resourcesFrom") if key in spec}
    words = {key: reader.checked(spec[key], f"{field}.{key}", validation.command) if isinstance(
        reader.value(spec[key]), str) else reader.texts(spec[key], f"{field}.{key}") for key in ("command", "entrypoint")
             if key in spec}
    request = RunRequest(
        image=image, name=name,
        namespace=reader.checked(spec["namespace"], f"{field}.namespace", validation.dns_label, "namespace")
        if "namespace" in spec else namespace,
        env=env, env_from=workloads.get("envFrom"), volumes_from=workloads.get("volumesFrom"),
        resources_from=workloads.get("resourcesFrom"),
        volumes=reader.checked(spec["volumes"], f"{field}.volumes", validation.volumes) if "volumes" in spec else [],
        ports=reader.checked(spec["ports"], f"{field}.ports", validation.published_ports) if "ports" in spec else {},
        command=words.get("command"), entrypoint=words.get("entrypoint"))
    try:
        request.validate()
    except errors.UsageError as exc:
        raise reader.fail(node, field, exc.what, exc.hint or "") from exc
    return SessionContainer(request, build)


def _bridge(reader: _Reader, index: int, node: yaml.Node, namespace: str,
            containers: dict[str, SessionContainer]) -> BridgeRequest:
    field = f"bridges[{index}]"
    spec = reader.mapping(node, field, _BRIDGE)
    for required in ("container", "target", "ports"):
        if required not in spec:
            raise reader.fail(node, f"{field}.{required}", "is missing")
    local = reader.text(spec["container"], f"{field}.container")
    if local not in containers:
        raise reader.fail(spec["container"], f"{field}.container", f"{local!r} is not a container of this file",
                          f"its containers: {', '.join(containers) or 'none'}")
    matches = []
    if "match" in spec:
        for kind, value_node in reader.mapping(spec["match"], f"{field}.match", frozenset(MATCH_KINDS)).items():
            header, value = reader.checked(value_node, f"{field}.match.{kind}", validation.match_flag, kind)
            matches.append(Match(kind, value, header))
    request = BridgeRequest(
        local=local, target=reader.checked(spec["target"], f"{field}.target", validation.workload),
        ports=reader.checked(spec["ports"], f"{field}.ports", validation.bridge_ports),
        namespace=reader.checked(spec["namespace"], f"{field}.namespace", validation.dns_label, "namespace")
        if "namespace" in spec else namespace,
        matches=matches, mirror=reader.flag(spec["mirror"], f"{field}.mirror") if "mirror" in spec else False,
        protocol=reader.text(spec["protocol"], f"{field}.protocol") if "protocol" in spec else None,
        tls_secret=reader.text(spec["tlsSecret"], f"{field}.tlsSecret") if "tlsSecret" in spec else None,
        tls_verify=not (reader.flag(spec["tlsInsecureSkipVerify"], f"{field}.tlsInsecureSkipVerify")
                        if "tlsInsecureSkipVerify" in spec else False))
    try:
        request.validate()
    except errors.UsageError as exc:
        raise reader.fail(node, field, exc.what, exc.hint or "") from exc
    return request
