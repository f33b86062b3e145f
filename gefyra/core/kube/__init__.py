"""The Kubernetes adapter: the only package that talks to the cluster's API (kubernetes_asyncio).
One client with error translation and retries, every REST path in one place, the kubeconfig,
workloads and their pods."""

from gefyra.core.kube import lazy_client

lazy_client.prepare()  # before any module of this package imports kubernetes_asyncio
