"""The egress proxy of `network: allowlist`, as data: squid's config and its log's denials.

Pure: no Docker. The proxy allows exactly the names and ports of the policy's `allow` rules,
by name (never by address: addresses resolved once go stale, and one address serves many
names), for plain HTTP and for CONNECT tunnels alike; TLS inside a tunnel is never opened.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from runner.core.policy import AllowRule
from runner.core.results import Denial

PORT = 3128
"""Where the proxy listens on the sandboxes' internal network."""

LOG_FORMAT = "%ts.%03tu %>a %Ss %>Hs %rm %>rP %>rd"
"""One access-log line: time, client address, squid status, HTTP status, method, port, host.
The host comes last: it is the one field the client chose."""

_DENIED = "TCP_DENIED"


def allowlist_key(rules: Sequence[AllowRule]) -> str:
    """Same rules (in any order) -> same key: sandboxes with equal allowlists share a proxy."""
    canonical = sorted(json.dumps([r.host, r.ports]) for r in rules)
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()[:10]


def _host_acl(host: str) -> str:
    # -n: never look a requested IP literal up as a name (a reverse lookup could let an
    # address match a listed name, and would send the literal to DNS).
    if host.startswith("*."):
        # Subdomains only, as the policy says; squid's `.suffix` would also match suffix.
        # Rule hosts are validated DNS names: a dot is the only character to escape.
        return r"dstdom_regex -n -i \." + host[2:].replace(".", r"\.") + "$"
    return f"dstdomain -n {host}"


def squid_config(rules: Sequence[AllowRule], *, port: int = PORT) -> str:
    """squid.conf allowing only `rules` (host name + port, HTTP and CONNECT), nothing else."""
    if not rules:
        raise ValueError("an allowlist proxy needs at least one rule")
    lines = [
        f"http_port {port}",
        "visible_hostname runner-egress",  # no lookup of its own host name at start
        # No disk, no pid file, logs to the container's stdout/stderr: the root is read-only.
        "pid_filename none",
        "cache deny all",
        "cache_mem 0 MB",
        "netdb_filename none",
        "coredump_dir /tmp",
        "logfile_rotate 0",
        f"logformat runner {LOG_FORMAT}",
        "access_log stdio:/dev/stdout runner",
        "cache_log stdio:/dev/stderr",
        # ICMP pinger needs a raw socket (a capability it does not get); ICP/HTCP unused.
        "pinger_enable off",
        "icp_port 0",
        "htcp_port 0",
        # Forward nothing about the client; say nothing about the proxy.
        "via off",
        "forwarded_for delete",
        "httpd_suppress_version_string on",
        "shutdown_lifetime 0 seconds",
        "http_access deny manager",
    ]
    for index, rule in enumerate(rules):
        ports = " ".join(str(p) for p in rule.ports)
        lines += [f"acl host{index} {_host_acl(rule.host)}", f"acl port{index} port {ports}"]
    for index in range(len(rules)):
        # Name and port first: `to_localhost` needs a DNS lookup, and an unlisted name must
        # never reach DNS through the proxy (that would be a way to exfiltrate data).
        lines.append(f"http_access allow host{index} port{index} !to_localhost")
    lines.append("http_access deny all")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class LogEntry:
    """One denied request from the proxy's access log."""

    time: float
    """Seconds since the epoch (squid's clock: the host's)."""
    client: str
    """The sandbox's address on the internal network."""
    host: str
    port: int | None


def parse_denials(text: str) -> list[LogEntry]:
    """The denied requests in access-log text in LOG_FORMAT; other lines are skipped."""
    found = []
    for line in text.splitlines():
        fields = line.split(" ", 6)
        if len(fields) != 7 or fields[2] != _DENIED:
            continue
        stamp, client, _status, _code, _method, port, host = fields
        try:
            when = float(stamp)
        except ValueError:
            continue
        found.append(LogEntry(when, client, host.strip(), int(port) if port.isdigit() else None))
    return found


def denials_for(
    entries: Iterable[LogEntry], client: str, since: float, until: float
) -> list[Denial]:
    """The denials of one sandbox: its address, within the time it ran."""
    return [
        Denial(
            time=datetime.fromtimestamp(e.time, UTC).isoformat(timespec="milliseconds"),
            host=e.host,
            port=e.port,
        )
        for e in entries
        if e.client == client and since <= e.time <= until
    ]
