"""Access to the development cluster for end-to-end tests (see hack/devcluster/)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEVCLUSTER = Path(os.environ.get("GEFYRA_DEVCLUSTER_DIR", REPO / ".devcluster"))
KUBECONFIG = DEVCLUSTER / "kubeconfig"
KUBECTL = DEVCLUSTER / "kubectl"
# Podman's CLI needs the ulimit setting of this machine (see hack/devcluster/containers.conf), and
# to know that the development registry speaks plain HTTP.
os.environ.setdefault("CONTAINERS_CONF", str(REPO / "hack" / "devcluster" / "containers.conf"))
os.environ.setdefault("CONTAINERS_REGISTRIES_CONF", str(REPO / "hack" / "devcluster" / "registries.conf"))
#: gefyra's images come from the development registry, as a user's come from theirs.
REGISTRY_FILE = DEVCLUSTER / "registry"
if REGISTRY_FILE.exists():
    os.environ.setdefault("GEFYRA_REGISTRY", REGISTRY_FILE.read_text().strip())
#: The test server, for the cluster's workloads: pulled from the development registry, as a user's
#: workloads pull theirs (so carrier can be pulled in their place too).
WORKLOAD_IMAGE = f"{os.environ.get('GEFYRA_REGISTRY', '10.250.0.2:5000')}/gefyra/testserver:dev"
#: The test server, for local containers (Docker and Podman have it under this name).
TEST_IMAGE = "gefyra/testserver:dev"


def node_ip() -> str:
    return (DEVCLUSTER / "node-ip").read_text().strip()


def require_cluster() -> None:
    if not KUBECONFIG.exists():
        raise RuntimeError(f"no development cluster ({KUBECONFIG} missing): run 'make cluster images'")


def kubectl(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 120) -> str:
    proc = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(KUBECONFIG), *args],
        input=stdin, capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def kubectl_result(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """kubectl whose failure is the point: the caller checks the exit code and stderr."""
    return subprocess.run([str(KUBECTL), "--kubeconfig", str(KUBECONFIG), *args],
                          input=stdin, capture_output=True, text=True, timeout=timeout)


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json"))


def apply(manifest: str) -> None:
    kubectl("apply", "-f", "-", stdin=manifest)


def engine(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The CLI of the container engine under test (GEFYRA_RUNTIME: docker or podman)."""
    binary = os.environ.get("GEFYRA_RUNTIME") or "docker"
    proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{binary} {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def eventually(fn: Any, timeout: float = 60, interval: float = 0.5) -> Any:
    """Calls ``fn`` until it returns without raising; re-raises its last error after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (AssertionError, subprocess.SubprocessError):
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)


def assert_equal(found: object, wanted: object) -> None:
    """An assertion for `eventually(lambda: ...)` that shows both sides."""
    assert found == wanted, (found, wanted)


def http_workload(name: str, namespace: str, replicas: int = 2, env: dict[str, str] | None = None,
                  kind: str = "deployment", spread: bool = False) -> str:
    """Manifest of the test server as a Deployment, StatefulSet or bare Pod ("deployment",
    "statefulset", "pod"), with a ClusterIP Service in front of it (http 80 -> 8080, echo 9000).
    ``spread``: its pods on as many nodes as there are (at most one more on any node)."""
    env_lines = "".join(
        f"\n        - {{name: {k}, value: {json.dumps(v)}}}" for k, v in (env or {}).items()
    )
    spread_lines = f"""
      topologySpreadConstraints:
      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
         labelSelector: {{matchLabels: {{app: {name}}}}}}}""" if spread else ""
    pod_spec = f"""{spread_lines}
      terminationGracePeriodSeconds: 1
      containers:
      - name: server
        image: {WORKLOAD_IMAGE}
        imagePullPolicy: IfNotPresent
        ports: [{{containerPort: 8080}}, {{containerPort: 9000}}, {{containerPort: 9001, protocol: UDP}}]
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}{env_lines}
        readinessProbe:
          httpGet: {{path: /healthz, port: 8080}}
          periodSeconds: 1"""
    if kind == "pod":
        workload = f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}, labels: {{app: {name}}}}}
spec:{pod_spec.replace(chr(10) + "  ", chr(10))}
"""
    else:
        api_kind = {"deployment": "Deployment", "statefulset": "StatefulSet"}[kind]
        extra = f"\n  serviceName: {name}" if kind == "statefulset" else ""
        workload = f"""
apiVersion: apps/v1
kind: {api_kind}
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: {replicas}{extra}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:{pod_spec}
"""
    return workload + f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{app: {name}}}
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
  - {{name: echo, port: 9000, targetPort: 9000}}
"""


def client_pod(name: str, namespace: str) -> str:
    """Manifest of a long-running pod from which tests make requests (kubectl exec)."""
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: {WORKLOAD_IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sleep, infinity]
"""


CTR = ["ctr", "--address", "/run/gefyra-devcluster/containerd.sock", "-n", "k8s.io"]
_RUN_DIR = Path("/run/gefyra-devcluster")


def stowaway_pod() -> dict[str, Any]:
    """gefyra's stowaway pod (the one not being deleted)."""
    pods = kubectl_json("-n", "gefyra", "get", "pods", "-l", "app.kubernetes.io/name=gefyra-stowaway")["items"]
    return next(p for p in pods if not p["metadata"].get("deletionTimestamp"))


def container_state(pod: dict[str, Any], container: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in pod["status"].get("containerStatuses") or [] if s["name"] == container)
    return found


def kill_container(pod: dict[str, Any], container: str) -> None:
    """SIGKILLs a container of a pod on the node, as a crash would (the kubelet restarts it)."""
    container_id = container_state(pod, container)["containerID"].split("://")[1]
    subprocess.run([*CTR, "task", "kill", "-s", "SIGKILL", container_id], check=True, capture_output=True)


def container_pids(pod: dict[str, Any], container: str) -> list[int]:
    """The node's process ids of a pod's container (the cluster runs on this machine): its memory
    and CPU time are read from /proc, also for images without a shell."""
    container_id = container_state(pod, container)["containerID"].split("://")[1]
    out = subprocess.run([*CTR, "task", "ps", container_id], check=True, capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:] if line.split() and line.split()[0].isdigit()]


def _proc(pid: int, name: str) -> str:
    """/proc/PID/NAME, "" for a process that has ended since it was listed (a shell's short-lived
    child)."""
    try:
        return Path(f"/proc/{pid}/{name}").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def rss_mib(pids: list[int]) -> float:
    """Resident memory of these processes together (VmRSS), in MiB."""
    total = 0
    for pid in pids:
        for line in _proc(pid, "status").splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of these processes so far, their ended children's included (what
    the kernel does for them in interrupts, like NAT, is not in it). One that has ended counts 0."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        stat = _proc(pid, "stat")
        if stat:
            fields = stat.rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime (fields 14-17)
    return total / ticks


def restart_apiserver() -> None:
    """Kills kube-apiserver (as a crash would: its connections end at once) and starts it again (the
    development cluster's up.sh starts what is not running); returns once it is ready."""
    pid = int((_RUN_DIR / "kube-apiserver.pid").read_text())
    subprocess.run(["kill", "-KILL", str(pid)], check=True)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text():
        if time.monotonic() > deadline:
            raise AssertionError("kube-apiserver did not stop")
        time.sleep(0.1)
    subprocess.run([str(REPO / "hack" / "devcluster" / "up.sh")], check=True, capture_output=True, timeout=180)
