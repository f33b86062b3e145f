"""Pod Security and admission: a workload in a namespace that enforces `restricted` is bridged and
restored (carrier runs under the target container's own securityContext), and an admission policy
that refuses stowaway's pod ends `up` at once, naming the policy."""

from __future__ import annotations

import time

import pytest

from tests.e2e import devcluster
from tests.e2e.devcluster import TEST_IMAGE, WORKLOAD_IMAGE, eventually, kubectl, kubectl_json, unique
from tests.e2e.gefyra_cli import gefyra, ok, snapshot

pytestmark = pytest.mark.e2e


def _restricted_workload(name: str, namespace: str) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        runAsGroup: 1000
        seccompProfile: {{type: RuntimeDefault}}
      containers:
      - name: server
        image: {WORKLOAD_IMAGE}
        imagePullPolicy: IfNotPresent
        ports: [{{containerPort: 8080}}]
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {{drop: [ALL]}}
        readinessProbe:
          httpGet: {{path: /healthz, port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"""


def test_restricted_workload_is_bridged_and_restored() -> None:
    ns, caller_ns = unique("gfy-test-restricted"), unique("gfy-test-caller")
    kubectl("create", "namespace", ns)
    kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    # The caller runs in another namespace: it need not be restricted itself.
    kubectl("create", "namespace", caller_ns)
    try:
        devcluster.apply(_restricted_workload("web", ns))
        devcluster.apply(devcluster.client_pod("caller", caller_ns))
        kubectl("-n", ns, "rollout", "status", "deploy/web", "--timeout=90s")
        kubectl("-n", caller_ns, "wait", "--for=condition=Ready", "pod/caller", "--timeout=60s")

        def get() -> str:
            return kubectl("-n", caller_ns, "exec", "caller", "--", "testserver", "get", f"http://web.{ns}/")

        eventually(lambda: get().startswith("hello from web-"), timeout=20)
        spec_before = kubectl_json("-n", ns, "get", "pods", "-l", "app=web")["items"][0]["spec"]
        ok("up")
        ok("run", "-i", TEST_IMAGE, "-N", "gfy-restricted-local", "-n", ns, "-d", "-e", "MESSAGE=LOCAL")
        ok("bridge", "-N", "gfy-restricted-local", "-n", ns, "--target", "deploy/web", "-p", "8080:8080")
        assert eventually(get, timeout=10).startswith("hello from LOCAL")
        ok("unbridge", "--all")
        assert eventually(lambda: get().startswith("hello from web-"), timeout=10)
        assert kubectl_json("-n", ns, "get", "pods", "-l", "app=web")["items"][0]["spec"] == spec_before
    finally:
        gefyra("down")
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
        kubectl("delete", "namespace", caller_ns, "--wait=false", check=False)


_DENY_POLICY = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: gfy-test-no-tunnels}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}
  validations:
  - expression: "!object.spec.containers.exists(c, c.name == 'stowaway')"
    message: "no tunnels in this cluster"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: gfy-test-no-tunnels}
spec:
  policyName: gfy-test-no-tunnels
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: gefyra}
"""


def test_up_fails_at_once_when_admission_refuses_stowaway() -> None:
    gefyra("down")
    before = snapshot()
    devcluster.apply(_DENY_POLICY)
    try:
        time.sleep(2)  # the API server loads a new policy within about a second
        started = time.monotonic()
        result = gefyra("up")
        took = time.monotonic() - started
    finally:
        kubectl("delete", "validatingadmissionpolicybinding", "gfy-test-no-tunnels", check=False)
        kubectl("delete", "validatingadmissionpolicy", "gfy-test-no-tunnels", check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: the tunnel's server end (gefyra-stowaway) cannot start") \
        and "gfy-test-no-tunnels" in lines[-1], result.stderr
    assert took < 20, took
    assert snapshot() == before
