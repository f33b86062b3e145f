"""gefyra's model: pure data and the checks of it, shared by the client, the operator and the
plugins. Names and labels, settings, requests, results, the typed custom resources (``crd``) and
the rules both ends apply to them. No network, no cluster, no engine."""
