"""The orchestrator core, in layers: ``model`` (pure data and checks), ``kube`` (the Kubernetes
adapter), ``spi`` (the backend contracts), ``engine`` (the event bus, plans, hooks and the
orchestrator). No backend is named here: the backends are plugins (:mod:`gefyra.plugins`)."""
