"""kubernetes_asyncio's parts that gefyra uses, imported without the rest.

Its package imports every API class and every model (about 1,500 modules, 0.3 s of each command's
start on a small machine) for any of its modules; gefyra uses its connection (``ApiClient`` with
plain JSON, ``Configuration``), its kubeconfig loader and its streams. :func:`prepare` puts the
packages into ``sys.modules`` as they would be, minus their ``__init__``'s imports, which run the
first time anything else is asked of them (``client.CoreV1Api``, a model): a program that embeds
gefyra and uses the whole library notices nothing. Where the library is imported already, or its
layout is not what this expects, it does nothing and the library is imported as usual."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

_ROOT = "kubernetes_asyncio"


def _package(name: str, directory: Path) -> types.ModuleType:
    """The package ``name`` with its submodules importable and its ``__init__`` run on first need."""
    module = types.ModuleType(name)
    init = directory / "__init__.py"
    module.__file__, module.__path__, module.__package__ = str(init), [str(directory)], name
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, origin=str(init), is_package=True)
    module.__spec__.submodule_search_locations = [str(directory)]

    def __getattr__(attr: str) -> Any:  # noqa: N807 - a module's own attribute hook (PEP 562)
        if attr.startswith("__") and attr not in ("__all__", "__version__"):  # the import system's probes
            raise AttributeError(attr)
        if (directory / f"{attr}.py").is_file() or (directory / attr / "__init__.py").is_file():
            return importlib.import_module(f"{name}.{attr}")  # as `from package import submodule`
        del module.__dict__["__getattr__"]
        exec(compile(init.read_text(), str(init), "exec"), module.__dict__)  # noqa: S102 - the package's own code
        return getattr(module, attr)

    module.__dict__["__getattr__"] = __getattr__
    sys.modules[name] = module
    return module


def _directory(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def _without_dateutil_parser(name: str) -> types.ModuleType:
    """Imports ``name`` (the library's api_client) with a stand-in for ``dateutil.parser``, whose
    import (its time zones, its parser's tables) is 0.01 s of each command's start: api_client takes
    ``parse`` from it to turn the dates of typed models back into objects, which gefyra never asks
    for (plain JSON). The stand-in's ``parse`` imports the real one when it is first called. It is
    in ``sys.modules`` during this import only: every later importer gets the real module."""
    if "dateutil.parser" in sys.modules:
        return importlib.import_module(name)

    def parse(*args: Any, **kwargs: Any) -> Any:
        return importlib.import_module("dateutil.parser").parse(*args, **kwargs)

    stand_in = types.ModuleType("dateutil.parser")
    stand_in.__dict__["parse"] = parse
    sys.modules["dateutil.parser"] = stand_in
    try:
        module = importlib.import_module(name)
    finally:
        del sys.modules["dateutil.parser"]
    if module.__dict__.get("parse") is not parse:  # it took something else from it: the real module then
        importlib.import_module("dateutil.parser")
    return module


def prepare() -> None:
    """See the module's docstring."""
    if _ROOT in sys.modules:
        return
    root = _directory(_ROOT)
    if root is None:
        return
    # Its Configuration imports urllib3 (0.03 s) for basic auth alone: urllib3's own ``__init__``
    # too runs when something asks for it.
    if "urllib3" not in sys.modules and (urllib3 := _directory("urllib3")) is not None:
        _package("urllib3", urllib3)
    try:
        top = _package(_ROOT, root)
        client = _package(f"{_ROOT}.client", root / "client")
        top.__dict__["client"] = client
        client.__dict__["models"] = _package(f"{_ROOT}.client.models", root / "client" / "models")
        # kube_config imports these two from the package itself.
        client.__dict__["ApiClient"] = _without_dateutil_parser(f"{_ROOT}.client.api_client").ApiClient
        client.__dict__["Configuration"] = importlib.import_module(f"{_ROOT}.client.configuration").Configuration
        importlib.import_module(f"{_ROOT}.config")
    except Exception:  # noqa: BLE001 - another layout: forget every part, import as usual
        for name in [n for n in sys.modules if n.partition(".")[0] in (_ROOT, "urllib3")]:
            del sys.modules[name]
