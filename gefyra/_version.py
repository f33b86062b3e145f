"""gefyra's version: the package's, and the tag of the images it runs (pyproject.toml reads it here)."""

__version__ = "0.1.0.dev0"
