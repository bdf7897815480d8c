"""Sandbox policies: sizes, hardened defaults, and errors that name file, line and field."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from runner.core.policy import Policy, load_policy, parse_size, warnings, weakenings
from runner.errors import InputError
from runner.settings import PROJECT_ROOT

POLICIES = PROJECT_ROOT / "policies"
MiB, GiB = 1024**2, 1024**3


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("512m", 512 * MiB),
        ("1g", GiB),
        ("1G", GiB),
        ("2GiB", 2 * GiB),
        ("1.5g", int(1.5 * GiB)),
        ("4k", 4096),
        ("4KB", 4096),
        ("1t", 1024**4),
        (" 8 MiB ", 8 * MiB),
        ("100", 100),
        ("100b", 100),
        (1024, 1024),
    ],
)
def test_parse_size(value: str | int, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["", "m", "1x", "1ib", "1i", "-1m", "1.g", "1 g b", "\u0665m"])
def test_parse_size_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(value)


@pytest.mark.parametrize("value", [True, None, 1.5, [1]])
def test_parse_size_refuses_other_types_with_a_value_error(value: Any) -> None:
    # A TypeError would escape pydantic's validation and crash load_policy.
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(value)


def test_defaults_are_hardened() -> None:
    p = Policy()
    assert p.user == "10001:10001"
    assert p.network == "none"
    assert p.cap_drop == ["ALL"]
    assert p.read_only_root is True
    assert p.no_new_privileges is True
    assert (p.cpus, p.memory, p.pids, p.tmp_size) == (1.0, GiB, 512, 256 * MiB)
    assert p.tmp_options == "nosuid,nodev,noexec"
    assert p.runtime is None


def test_sizes_are_accepted_as_strings() -> None:
    p = Policy.model_validate(
        {"memory": "2g", "tmp_size": "64m", "max_bundle": 10, "max_out": "1k"}
    )
    assert (p.memory, p.tmp_size, p.max_bundle, p.max_out) == (2 * GiB, 64 * MiB, 10, 1024)


@pytest.mark.parametrize("user", ["0:0", "0:10001", "00:10001", "000:0"])
def test_root_uid_is_refused(user: str) -> None:
    with pytest.raises(ValidationError, match=r"uid 0 \(root\) is not allowed"):
        Policy(user=user)


@pytest.mark.parametrize("user", ["root", "1000", "1000:", ":1000", "a:b", "-1:0", "\u0661:\u0661"])
def test_user_must_be_numeric_uid_gid(user: str) -> None:
    with pytest.raises(ValidationError, match="String should match pattern"):
        Policy(user=user)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("memory", 0),  # Docker reads 0 as "no limit"
        ("memory", "0m"),
        ("memory", -1),
        ("tmp_size", "0"),
        ("cpus", 0),
        ("cpus", 0.001),  # below Docker's minimum; rounds to nano_cpus 0 = no limit
        ("cpus", float("inf")),
        ("cpus", float("nan")),
        ("pids", 15),
        ("network", "host"),
        ("network", "bridge"),
        ("colour", "red"),
    ],
)
def test_weak_or_unknown_values_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        Policy.model_validate({field: value})


def test_policy_is_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        Policy().network = "open"  # type: ignore[misc]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def policy_error(path: Path) -> str:
    with pytest.raises(InputError) as info:
        load_policy(path)
    assert info.value.exit_code == 2
    return info.value.message


def test_load_policy_reads_sizes(tmp_path: Path) -> None:
    p = load_policy(write(tmp_path, "memory: 2g\ncpus: 2\nnetwork: open\n"))
    assert (p.memory, p.cpus, p.network) == (2 * GiB, 2.0, "open")
    assert p.cap_drop == ["ALL"]  # what the file leaves out stays hardened


def test_load_policy_empty_file_is_the_default(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "# nothing\n")) == Policy()


def test_load_policy_bad_size_names_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, 'user: "10001:10001"\ncpus: 1\nmemory: lots\n')
    assert policy_error(path) == f"{path}:3: memory: 'lots' is not a size (use e.g. 512m, 1g)"


def test_load_policy_root(tmp_path: Path) -> None:
    path = write(tmp_path, 'cpus: 1\nuser: "0:0"\n')
    assert policy_error(path) == f"{path}:2: user: uid 0 (root) is not allowed in a sandbox"


def test_load_policy_unknown_field(tmp_path: Path) -> None:
    path = write(tmp_path, "cpus: 1\nnetwrok: none\n")
    assert policy_error(path) == f"{path}:2: netwrok: Extra inputs are not permitted"


def test_load_policy_list_item(tmp_path: Path) -> None:
    path = write(tmp_path, "cap_drop:\n  - ALL\n  - [NET_RAW]\n")
    assert policy_error(path) == f"{path}:3: cap_drop.1: Input should be a valid string"


@pytest.mark.parametrize("value", ["1.5", "true", "null", "0"])
def test_load_policy_bad_memory_is_an_input_error(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"memory: {value}\n")
    assert policy_error(path).startswith(f"{path}:1: memory: ")


def test_load_policy_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- network: none\n")
    assert policy_error(path).startswith(f"{path}:1: (policy): ")


def test_load_policy_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "cpus: 1\nmemory: [1g\n")
    assert policy_error(path).startswith(f"{path}:3: not valid YAML: ")


def test_load_policy_duplicate_key(tmp_path: Path) -> None:
    path = write(tmp_path, "network: none\nnetwork: open\n")
    assert policy_error(path) == f"{path}:2: not valid YAML: duplicate key 'network'"


def test_load_policy_missing_file(tmp_path: Path) -> None:
    assert policy_error(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: no such policy file"


def test_load_policy_unreadable(tmp_path: Path) -> None:
    assert policy_error(tmp_path).startswith(f"{tmp_path}: cannot read: ")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert policy_error(binary).startswith(f"{binary}: cannot read: ")


def test_shipped_default_policy_is_the_hardened_default() -> None:
    p = load_policy(POLICIES / "default.yaml")
    assert p == Policy()
    assert p.network == "none"
    assert p.cap_drop == ["ALL"]
    assert p.read_only_root is True
    assert p.no_new_privileges is True
    assert not p.user.startswith("0:")


def test_shipped_open_network_policy_is_hardened_apart_from_the_network() -> None:
    p = load_policy(POLICIES / "open-network.yaml")
    assert p.network == "open"
    assert p.model_dump(exclude={"network", "memory", "tmp_size"}) == Policy().model_dump(
        exclude={"network", "memory", "tmp_size"}
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cap_drop": []}, "cap_drop does not drop ALL capabilities"),
        ({"cap_drop": ["NET_RAW"]}, "cap_drop does not drop ALL capabilities"),
        ({"no_new_privileges": False}, "no_new_privileges is off"),
        ({"read_only_root": False}, "read_only_root is off"),
        ({"user": "10001:0"}, "user has group 0"),
        ({"tmp_options": "nosuid,nodev"}, "tmp_options lacks noexec"),
        ({"tmp_options": "nosuid,nodev,noexec,exec"}, None),  # noexec still listed: kept
    ],
)
def test_weakening_needs_unsafe_and_is_then_said(
    fields: dict[str, Any], message: str | None
) -> None:
    if message is None:
        Policy.model_validate(fields)
        return
    with pytest.raises(ValidationError, match="weakens the sandbox"):
        Policy.model_validate(fields)
    policy = Policy.model_validate(fields | {"unsafe": True})
    assert any(message in w for w in weakenings(policy))
    assert any(w.startswith("unsafe policy: ") and message in w for w in warnings(policy))


def test_hardened_default_has_nothing_to_say_and_open_network_is_said() -> None:
    assert weakenings(Policy()) == [] and warnings(Policy()) == []
    assert warnings(Policy(network="open")) == [
        "network: open reaches anything the host can (use allowlist)"
    ]


@pytest.mark.parametrize(
    "options", ["size=1g", "nosuid,size=1g", "nosuid,rw,nodev,noexec", "uid=$(id)", "nosuid=1"]
)
def test_tmp_options_are_checked(options: str) -> None:
    with pytest.raises(ValidationError, match="tmp_options"):
        Policy.model_validate({"tmp_options": options, "unsafe": True})


def test_tmp_options_may_add_mode_and_inodes() -> None:
    assert Policy(tmp_options="nosuid,nodev,noexec,mode=1777,nr_inodes=4096").tmp_size > 0


def test_allowlist_rules() -> None:
    policy = Policy.model_validate(
        {
            "network": "allowlist",
            "allow": [
                {"host": "API.Example.Test."},
                {"host": "*.pkg.example.test", "ports": [80, 443, 80]},
            ],
        }
    )
    assert [(r.host, r.ports) for r in policy.allow] == [
        ("api.example.test", [443]),
        ("*.pkg.example.test", [80, 443]),
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"network": "allowlist"}, "needs at least one `allow` entry"),
        ({"allow": [{"host": "a.example.test"}]}, "applies only to network: allowlist"),
        ({"network": "allowlist", "allow": [{"host": "10.0.0.1"}]}, "IP addresses are not allowed"),
        ({"network": "allowlist", "allow": [{"host": "[::1]"}]}, "not a host name"),
        ({"network": "allowlist", "allow": [{"host": "a.*.example.test"}]}, "not a host name"),
        ({"network": "allowlist", "allow": [{"host": "-x.example.test"}]}, "not a host name"),
        ({"network": "allowlist", "allow": [{"host": "a.test", "ports": [0]}]}, "not in 1..65535"),
        ({"network": "allowlist", "allow": [{"host": "a.test", "ports": []}]}, "at least 1"),
        ({"runtime": "runsc --flag"}, "not a runtime name"),
    ],
)
def test_network_and_runtime_fields_are_checked(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Policy.model_validate(fields)


def test_weakening_error_points_at_the_field_line(tmp_path: Path) -> None:
    path = tmp_path / "weak.yaml"
    path.write_text("cpus: 1\nmemory: 1g\nread_only_root: false\n")
    with pytest.raises(InputError, match=r"weak.yaml:3: read_only_root: weakens the sandbox"):
        load_policy(path)
