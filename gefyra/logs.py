"""structlog configuration, done once by the CLI: console for people, JSON for machines.
Logs go to stderr so that stdout stays clean for ``-o json``."""

from __future__ import annotations

import logging
import sys

import structlog

#: Libraries whose debug output includes whole API responses, Secrets among them: never below INFO.
_CHATTY_LIBRARIES = ("kubernetes_asyncio", "aiodocker", "aiohttp")


def configure(log_format: str = "console", verbose: bool = False, level: int | None = None) -> None:
    """``level`` overrides the one ``verbose`` picks (DEBUG, else WARNING)."""
    level = level if level is not None else logging.DEBUG if verbose else logging.WARNING
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for name in _CHATTY_LIBRARIES:  # their warnings repeat what gefyra's one error line says better
        logging.getLogger(name).setLevel(logging.INFO if level <= logging.DEBUG else logging.ERROR)
