"""Sandbox policies as data (policies/*.yaml): limits, network, user, filesystem."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from runner.core.yamlmarks import YamlSyntaxError, line_for, load_with_lines
from runner.errors import InputError

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(?:([kmgt])i?)?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
# Docker takes limits as int64 and refuses (mid-run, as an API error) what does not fit;
# a PiB is past any machine and far inside that.
MAX_SIZE = 1024**5


def parse_size(value: str | int) -> int:
    """'512m', '1g', '2GiB' or a byte count -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a size (use e.g. 512m, 1g)")
    # Decimal, not float: "9999...9t" must come out a (too) large number, not infinity.
    return int(Decimal(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


# A host name an allow rule may name: DNS labels, optionally behind one leading "*." (any
# subdomain). IP literals are refused: the allowlist is by name, never by address.
_HOST = re.compile(
    r"^(\*\.)?(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$"
)
_IPV4 = re.compile(r"^[0-9.]+$")
# tmpfs options a policy may give /tmp besides its size (which is tmp_size's alone).
_TMP_FLAGS = {"nosuid", "nodev", "noexec", "suid", "dev", "exec"}
_TMP_KEYS = {"mode", "nr_inodes", "uid", "gid"}


class AllowRule(BaseModel):
    """One destination an `allowlist` sandbox may reach through the run's egress proxy."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    host: str
    """A host name (api.example.test), or *.suffix for any name under it (not suffix itself)."""
    ports: list[int] = Field(default=[443], min_length=1)
    """Destination ports allowed for this host (default: 443)."""

    @field_validator("host")
    @classmethod
    def _host_name(cls, value: str) -> str:
        host = value.strip().lower().rstrip(".")
        if _IPV4.match(host) or ":" in host or not _HOST.match(host):
            raise ValueError(
                f"{value!r} is not a host name (names like api.example.test or "
                "*.pkg.example.test; IP addresses are not allowed)"
            )
        return host

    @field_validator("ports")
    @classmethod
    def _port_range(cls, ports: list[int]) -> list[int]:
        for port in ports:
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is not in 1..65535")
        return sorted(set(ports))


class Policy(BaseModel):
    """Limits and hardening of one sandbox. Every field has the hardened default."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False
    )

    user: str = Field(default="10001:10001", pattern=r"^[0-9]{1,10}:[0-9]{1,10}$")
    """Numeric uid:gid the task runs as (never root; a user image needs no account for it)."""
    cpus: float = Field(default=1.0, ge=0.01, le=4096)
    """CPU cores (CFS quota)."""
    memory: int = 1024**3
    """Memory limit in bytes (sizes like 512m accepted); swap is not allowed on top."""
    pids: int = Field(default=512, ge=16, le=4 * 1024**2)  # the kernel's pid_max limit
    """Process/thread limit (fork-bomb guard)."""
    network: Literal["none", "allowlist", "open"] = "none"
    """none: loopback only. allowlist: only the `allow` names, through the run's egress
    proxy. open: a plain bridge to anywhere the host reaches (loud warning)."""
    allow: list[AllowRule] = []
    """Destinations of `network: allowlist` (host names and ports)."""
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
    max_objects: int = Field(default=1_000_000, ge=1, le=2**53)
    """Most git objects the host accepts in a task's bundle."""
    disk: int = 4 * 1024**3
    """Bytes a task may add to its workspace, RUNNER_OUT and cache together; past it the
    task is stopped and ends `disk_limit` (its partial work kept)."""
    objects: Literal["all", "reachable"] = "all"
    """What of the repo's object store a task can read: all (every branch's history, the
    cheapest) or reachable (only the history of its start commit)."""
    unsafe: bool = False
    """Allow settings that weaken the sandbox (they are still reported loudly)."""

    @field_validator(
        "memory", "tmp_size", "max_bundle", "max_out", "max_log", "disk", mode="before"
    )
    @classmethod
    def _size(cls, value: str | int) -> int:
        size = parse_size(value)
        if size <= 0:  # Docker reads 0 as "no limit"
            raise ValueError(f"{value!r}: a size must be more than 0")
        if size > MAX_SIZE:
            raise ValueError(f"{value!r}: a size must be at most 1024t (1 PiB)")
        return size

    @field_validator("user")
    @classmethod
    def _not_root(cls, value: str) -> str:
        if int(value.split(":")[0]) == 0:  # "00" is root too
            raise ValueError("uid 0 (root) is not allowed in a sandbox")
        return value

    @field_validator("tmp_options")
    @classmethod
    def _tmp_options(cls, value: str) -> str:
        for opt in filter(None, (o.strip() for o in value.split(","))):
            key, _, arg = opt.partition("=")
            if key == "size":
                raise ValueError("the size of /tmp is tmp_size's; remove size= from tmp_options")
            if (key in _TMP_FLAGS and not arg) or (key in _TMP_KEYS and arg.isalnum()):
                continue
            raise ValueError(
                f"unknown tmpfs option {opt!r} (allowed: {', '.join(sorted(_TMP_FLAGS))}, "
                "mode=, nr_inodes=, uid=, gid=)"
            )
        return value

    @field_validator("runtime")
    @classmethod
    def _runtime_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", value):
            raise ValueError(f"{value!r} is not a runtime name (e.g. runsc)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if self.network == "allowlist" and not self.allow:
            raise ValueError("network: allowlist needs at least one `allow` entry")
        if self.allow and self.network != "allowlist":
            raise ValueError("`allow` applies only to network: allowlist")
        if (weak := weakenings(self)) and not self.unsafe:
            raise ValueError(_WEAK + "; ".join(weak) + " (set unsafe: true to accept)")
        return self


_WEAK = "weakens the sandbox: "


def weakenings(policy: Policy) -> list[str]:
    """Settings that take away part of the hardened sandbox; refused unless `unsafe: true`.

    Each begins with the field's name, so an error can point at its line."""
    weak = []
    if "ALL" not in {c.upper() for c in policy.cap_drop}:
        weak.append("cap_drop does not drop ALL capabilities")
    if not policy.no_new_privileges:
        weak.append("no_new_privileges is off (setuid binaries can gain privileges)")
    if not policy.read_only_root:
        weak.append("read_only_root is off (the image's files are writable)")
    if int(policy.user.split(":")[1]) == 0:
        weak.append("user has group 0 (root's group)")
    flags = {o.strip() for o in policy.tmp_options.split(",")}
    for flag in ("nosuid", "nodev", "noexec"):
        if flag not in flags:
            weak.append(f"tmp_options lacks {flag} (/tmp)")
    return weak


def warnings(policy: Policy) -> list[str]:
    """What to tell the user loudly about a policy before and during a run."""
    said = [f"unsafe policy: {w}" for w in weakenings(policy)]
    if policy.network == "open":
        said.append("network: open reaches anything the host can (use allowlist)")
    return said


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
        if not loc and msg.startswith(_WEAK):  # a whole-policy check: point at its first field
            loc = (msg.removeprefix(_WEAK).split(" ", 1)[0],)
        field = ".".join(map(str, loc)) or "(policy)"
        raise InputError(f"{path}:{line_for(lines, loc) or 1}: {field}: {msg}") from None
