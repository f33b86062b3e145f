"""The orchestrator core: event bus, steps and plans, hook specifications, plugin manager."""
