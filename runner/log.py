"""structlog set-up: readable lines for people on a terminal, JSON lines for machines."""

from __future__ import annotations

import logging
import os
import sys

import structlog


def configure(fmt: str = "auto", *, quiet: bool = False) -> None:
    """Log to stderr, so stdout stays the program's output (the JSON result with --json)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        # NO_COLOR (any non-empty value) turns colours off, as the progress view does.
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty() and not os.environ.get("NO_COLOR")
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.WARNING if quiet else logging.INFO
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
