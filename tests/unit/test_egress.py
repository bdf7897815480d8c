"""The egress proxy as data: squid's config from allow rules, denials from its log."""

from __future__ import annotations

import pytest

from runner.core.egress import (
    LOG_FORMAT,
    PORT,
    LogEntry,
    allowlist_key,
    denials_for,
    parse_denials,
    squid_config,
)
from runner.core.policy import AllowRule


def rules(*items: tuple[str, list[int]]) -> list[AllowRule]:
    return [AllowRule(host=h, ports=p) for h, p in items]


def directives(conf: str, name: str) -> list[str]:
    return [ln.split(" ", 1)[1] for ln in conf.splitlines() if ln.split(" ", 1)[0] == name]


def test_each_rule_allows_its_names_on_its_ports_only() -> None:
    conf = squid_config(rules(("api.example.test", [443]), ("*.pkg.example.test", [80, 443])))
    assert directives(conf, "acl") == [
        "host0 dstdomain -n api.example.test",
        "port0 port 443",
        r"host1 dstdom_regex -n -i \.pkg\.example\.test$",
        "port1 port 80 443",
    ]
    # Name and port together (not "any listed name on any listed port"), then deny all.
    assert directives(conf, "http_access") == [
        "deny manager",
        "allow host0 port0 !to_localhost",
        "allow host1 port1 !to_localhost",
        "deny all",
    ]


def test_names_are_checked_before_anything_that_resolves() -> None:
    # `to_localhost` is a dst ACL: squid resolves the name to test it. Coming after the
    # name, an unlisted name never reaches DNS through the proxy.
    conf = squid_config(rules(("api.example.test", [443])))
    for line in directives(conf, "http_access"):
        if "to_localhost" in line:
            assert line.index("host0") < line.index("to_localhost")
    assert "dst " not in conf.replace("dstdom", "")  # no address rules at all


def test_ip_literals_are_never_looked_up_as_names() -> None:
    conf = squid_config(rules(("api.example.test", [443]), ("*.example.test", [443])))
    for acl in directives(conf, "acl"):
        if " dstdom" in acl:
            assert " -n " in acl


def test_no_cache_no_disk_no_pid_logs_to_stdout() -> None:
    conf = squid_config(rules(("api.example.test", [443])))
    for line in (
        f"http_port {PORT}",
        "cache deny all",
        "pid_filename none",
        "access_log stdio:/dev/stdout runner",
        f"logformat runner {LOG_FORMAT}",
        "pinger_enable off",
        "forwarded_for delete",
        "via off",
    ):
        assert line in conf.splitlines()
    assert "cache_dir" not in conf
    assert "ssl_bump" not in conf  # tunnels are never opened


def test_an_empty_allowlist_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one rule"):
        squid_config([])


def test_the_key_is_the_set_of_rules() -> None:
    a = rules(("api.example.test", [443]), ("b.example.test", [80]))
    assert allowlist_key(a) == allowlist_key(list(reversed(a)))
    assert allowlist_key(a) != allowlist_key(rules(("api.example.test", [443])))
    assert allowlist_key(rules(("a.test", [443]))) != allowlist_key(rules(("a.test", [444])))


LOG = """\
1795631367.105 172.20.0.3 TCP_MISS 200 GET 8080 api.example.test
1795631367.108 172.20.0.3 TCP_DENIED 403 GET 8080 other.example.test
1795631367.130 172.20.0.3 TCP_DENIED 403 CONNECT 443 172.21.0.2
1795631367.136 172.20.0.3 TCP_TUNNEL 200 CONNECT 443 a.pkg.example.test
1795631368.000 172.20.0.4 TCP_DENIED 403 CONNECT 9090 api.example.test
1795631369.000 172.20.0.3 TCP_DENIED 403 GET - -
2026/11/25 18:29:20| a cache.log line that went to the same stream
garbage TCP_DENIED 403 GET 80 x.example.test
"""


def test_denied_lines_are_parsed_and_the_rest_skipped() -> None:
    assert parse_denials(LOG) == [
        LogEntry(1795631367.108, "172.20.0.3", "other.example.test", 8080),
        LogEntry(1795631367.130, "172.20.0.3", "172.21.0.2", 443),
        LogEntry(1795631368.0, "172.20.0.4", "api.example.test", 9090),
        LogEntry(1795631369.0, "172.20.0.3", "-", None),
    ]


def test_a_hostile_host_field_stays_one_field() -> None:
    entries = parse_denials("1.0 10.0.0.2 TCP_DENIED 403 GET 80 a b TCP_DENIED c\n")
    assert entries == [LogEntry(1.0, "10.0.0.2", "a b TCP_DENIED c", 80)]


def test_denials_of_one_sandbox_within_its_time() -> None:
    entries = parse_denials(LOG)
    found = denials_for(entries, "172.20.0.3", 1795631367.0, 1795631368.5)
    assert [(d.host, d.port) for d in found] == [
        ("other.example.test", 8080),
        ("172.21.0.2", 443),
    ]
    assert found[0].time == "2026-11-25T18:29:27.108+00:00"
    # Another sandbox's address, or the same address outside the window: not this task's.
    assert [d.host for d in denials_for(entries, "172.20.0.4", 0, 2e9)] == ["api.example.test"]
    assert denials_for(entries, "172.20.0.3", 1795631368.5, 1795631368.9) == []


def test_proxy_container_is_hardened_like_a_sandbox() -> None:
    from runner.sandbox.egress import proxy_options

    allow = rules(("api.example.test", [443]))
    opts = proxy_options("runner/proxy:1", "p", {"runner.run": "r1"}, "out-net", allow, None)
    assert opts["user"] == "13:13"
    assert opts["cap_drop"] == ["ALL"]
    assert opts["read_only"] is True
    assert opts["security_opt"] == ["no-new-privileges:true"]
    assert opts["tmpfs"] == {"/tmp": "size=16m,nosuid,nodev,noexec"}
    assert opts["mem_limit"] == opts["memswap_limit"] > 0
    assert opts["pids_limit"] > 0 and opts["nano_cpus"] > 0
    assert opts["network"] == "out-net" and opts["labels"] == {"runner.run": "r1"}
    assert opts["environment"] == {"RUNNER_PROXY_CONF": squid_config(allow)}
    assert "dns" not in opts  # the daemon's resolvers unless the operator names some
    for risky in ("privileged", "cap_add", "devices", "pid_mode", "ports", "volumes"):
        assert risky not in opts
    with_dns = proxy_options("i", "p", {}, "n", allow, ["10.0.0.53"])
    assert with_dns["dns"] == ["10.0.0.53"]
