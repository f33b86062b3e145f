"""gefyra's built-in plugins. Each is an ordinary pluggy plugin module; see gefyra.core.hookspecs."""
