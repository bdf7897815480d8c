"""Settings from the environment (RUNNER_ prefix). Built once in cli.py and passed down."""

from __future__ import annotations

from importlib.resources import files
from ipaddress import ip_address
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.errors import InputError

# The checkout, for tests; an installed runner has none, so no runtime path derives from it.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def package_data(name: str) -> Path:
    """A directory of the package's own data (runner/data/NAME; the checkout's top-level
    images/ and policies/ are symlinks to them), so an installed wheel finds it anywhere."""
    found = files("runner") / "data" / name
    # A Docker build context and policy lookups need a real directory; pip installs unpacked.
    if not isinstance(found, Path):
        raise InputError(f"runner is installed zipped ({found})", hint="pip install it unpacked")
    return found


class Settings(BaseSettings):
    """Machine-level knobs; everything about a run belongs in its plan."""

    model_config = SettingsConfigDict(env_prefix="RUNNER_", frozen=True)

    state_dir: Path | None = None
    """Where runs keep logs, outputs and results; default: <repo>/.git/runner (never the
    working tree)."""
    policies_dir: Path = Field(default_factory=lambda: package_data("policies"))
    """Where policy names (`policy: default`) are looked up; default: the package's own."""
    images_dir: Path = Field(default_factory=lambda: package_data("images"))
    """Dockerfiles of the runner's own images; default: the package's own."""
    collector_image: str = "runner/sandbox:1"
    """Image of the collector sandbox (needs git and sh); the runner's own by default."""
    docker_timeout: float = Field(default=120, ge=1, le=86400, allow_inf_nan=False)
    """Seconds any one Docker API call may take (a task's own run has its plan timeout)."""
    backend: Literal["docker", "swarm"] = "docker"
    """The sandbox backend (runner.sandbox.factory): `docker` (a container per sandbox) or
    `swarm` (one-shot services on a Docker Swarm; README "Scale out on Docker Swarm")."""
    keep_workspaces: bool = False
    """Keep each task's clone after the run (they are removed once collected)."""
    egress_network: str | None = None
    """An existing Docker network the egress proxies of `network: allowlist` reach the
    outside through (never removed by the runner); default: a bridge per run, made and
    removed by the run. Tests put servers of their own on it."""
    egress_dns: list[str] | None = None
    """Resolvers (IP addresses, JSON list) the egress proxies look allowed names up with;
    default: the daemon's. Sandboxes never resolve names themselves."""
    prices: Path | None = None
    """The prices file `runner costs` estimates costs with (USD per million tokens per model,
    see README "Agents and costs"); default: $XDG_CONFIG_HOME/runner/prices.yaml."""
    log_format: Literal["auto", "console", "json"] = "auto"
    """auto: readable on a terminal, JSON lines elsewhere."""
    runtime: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """OCI runtime of every sandbox whose policy names none (e.g. runsc: all under gVisor).
    Precedence: the policy's own `runtime`, then this, then the daemon's default runtime."""

    @field_validator("runtime", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # RUNNER_RUNTIME= (set but empty) means "the daemon's default", as if unset.
        return None if value == "" else value

    @field_validator("egress_dns")
    @classmethod
    def _addresses(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            try:
                ip_address(item)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address") from None
        return value
