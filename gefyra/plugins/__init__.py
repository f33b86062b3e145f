"""gefyra's built-in plugins, one package per backend. They are ordinary plugins: each marks its
hook implementations ``trylast``, so a third-party plugin (entry-point group ``gefyra``) wins."""

from __future__ import annotations

#: Registered by every plugin manager, in this order. Among ``trylast`` implementations pluggy asks
#: the earlier registered first: Podman comes before Docker so that it can claim auto-detection
#: when only Podman's socket exists.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "gefyra.plugins.podman",
    "gefyra.plugins.docker",
    "gefyra.plugins.wireguard",
    "gefyra.plugins.coredns",
    "gefyra.plugins.interceptor_nginx",
)
