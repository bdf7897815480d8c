"""The one place a sandbox backend is chosen. Each backend's module is imported only when it is
the one asked for, so a new backend (a cluster engine) is a new module and a line here, not a
change to the coordinator or the CLI."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from runner.errors import InputError

if TYPE_CHECKING:
    from runner.sandbox.base import SandboxBackend
    from runner.settings import Settings

BACKENDS: dict[str, str] = {
    "docker": "runner.sandbox.docker:DockerBackend",
    "swarm": "runner.sandbox.swarm:SwarmBackend",
}
"""Backend name (RUNNER_BACKEND) -> module:class of its SandboxBackend."""


def backend_class(name: str) -> type[SandboxBackend]:
    """The class of a backend by name, its module imported now.

    Raises:
        InputError: no backend has that name.
    """
    from runner.sandbox.base import SandboxBackend

    if name not in BACKENDS:
        raise InputError(
            f"unknown sandbox backend {name!r}",
            hint=f"set RUNNER_BACKEND to one of: {', '.join(sorted(BACKENDS))}",
        )
    module, _, attr = BACKENDS[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    assert isinstance(cls, type) and issubclass(cls, SandboxBackend), BACKENDS[name]
    return cls


def make_backend(settings: Settings) -> SandboxBackend:
    """The configured backend, connected to its engine.

    Raises:
        SandboxError: the engine is not reachable or does not answer in time.
    """
    return backend_class(settings.backend).from_settings(settings)
