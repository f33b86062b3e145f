"""The plan engine: the event bus, steps and the plans that run them, the hooks and the plugin
manager, the orchestrator that chooses the backends and keeps the connections."""
