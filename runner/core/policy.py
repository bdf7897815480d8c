"""Sandbox policies as data (policies/*.yaml): limits, network, user, filesystem."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runner.core.yamlmarks import YamlSyntaxError, line_for, load_with_lines
from runner.errors import InputError

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([kmgt])i?)?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: str | int) -> int:
    """'512m', '1g', '2GiB' or a byte count -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a size (use e.g. 512m, 1g)")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


class Policy(BaseModel):
    """Limits and hardening of one sandbox. Every field has the hardened default."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False
    )

    user: str = Field(default="10001:10001", pattern=r"^[0-9]+:[0-9]+$")
    """Numeric uid:gid the task runs as (never root; a user image needs no account for it)."""
    cpus: float = Field(default=1.0, ge=0.01)
    """CPU cores (CFS quota)."""
    memory: int = 1024**3
    """Memory limit in bytes (sizes like 512m accepted); swap is not allowed on top."""
    pids: int = Field(default=512, ge=16)
    """Process/thread limit (fork-bomb guard)."""
    network: Literal["none", "open"] = "none"
    """none: no network at all. open: a plain bridge to anywhere (loud warning)."""
    tmp_size: int = 256 * 1024**2
    """Size cap of the /tmp tmpfs, bytes."""
    tmp_options: str = "nosuid,nodev,noexec"
    """Mount options of /tmp besides its size."""
    read_only_root: bool = True
    """Root filesystem read-only; only /work, /out, /cache and /tmp are writable."""
    cap_drop: list[str] = ["ALL"]
    """Linux capabilities dropped."""
    no_new_privileges: bool = True
    """Forbid setuid escalation."""
    runtime: str | None = None
    """OCI runtime (e.g. runsc for gVisor); default: the daemon's."""
    max_bundle: int = 512 * 1024**2
    """Largest bundle the host accepts from a task, bytes."""
    max_out: int = 64 * 1024**2
    """Largest RUNNER_OUT directory collected from a task, bytes."""
    max_log: int = 64 * 1024**2
    """Bytes of a task's output kept in its log; past it only the last 4 KiB are kept."""

    @field_validator("memory", "tmp_size", "max_bundle", "max_out", "max_log", mode="before")
    @classmethod
    def _size(cls, value: str | int) -> int:
        size = parse_size(value)
        if size <= 0:  # Docker reads 0 as "no limit"
            raise ValueError(f"{value!r}: a size must be more than 0")
        return size

    @field_validator("user")
    @classmethod
    def _not_root(cls, value: str) -> str:
        if int(value.split(":")[0]) == 0:  # "00" is root too
            raise ValueError("uid 0 (root) is not allowed in a sandbox")
        return value


def load_policy(path: Path) -> Policy:
    """Read a policy file. Raises InputError naming the file, line and field."""
    try:
        data, lines = load_with_lines(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such policy file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    except YamlSyntaxError as exc:
        raise InputError(f"{path}:{exc.line or 1}: not valid YAML: {exc.message}") from None
    try:
        return Policy.model_validate(data or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        field = ".".join(map(str, loc)) or "(policy)"
        raise InputError(f"{path}:{line_for(lines, loc) or 1}: {field}: {msg}") from None
