"""The backend contracts, in gefyra's own types: a container runtime, a tunnel (both of its ends),
a DNS server for the tunnel's local end, an interceptor. Plugins implement them; the engine
chooses them through the hooks."""
