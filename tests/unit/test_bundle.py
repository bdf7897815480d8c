"""A task's bundle header and changed paths, judged as data (no git, no daemon)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.core.bundle import (
    BadBundle,
    BundleHeader,
    Change,
    header_problem,
    parse_header,
    path_problem,
)

START, OTHER, TIP = "a" * 40, "b" * 40, "c" * 40
REF = "refs/runner-result"


def test_parses_v2_and_v3_headers() -> None:
    v2 = f"# v2 git bundle\n-{START} subject line\n{TIP} {REF}\n\nPACK...".encode()
    assert parse_header(v2) == BundleHeader([START], [(TIP, REF)], [])
    v3 = f"# v3 git bundle\n@object-format=sha1\n-{START}\n{TIP} {REF}\n\nPACK".encode()
    assert parse_header(v3) == BundleHeader([START], [(TIP, REF)], ["object-format=sha1"])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"PACK\x00\x00", "no v2/v3 signature"),
        (b"# v2 git bundle\n" + f"{TIP} {REF}\n".encode(), "does not end"),
        (b"# v2 git bundle\n-xyz\n\n", "not an object id"),
        (b"# v2 git bundle\n" + TIP.encode() + b"\n\n", "not `<id> <ref>`"),
        (b"# v2 git bundle\n\xff\xfe\n\n", "not text"),
    ],
)
def test_malformed_headers_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(BadBundle, match=match):
        parse_header(data)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused_cleanly(data: bytes) -> None:
    with contextlib.suppress(BadBundle):
        parse_header(data)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (BundleHeader([START], [(TIP, REF)]), None),
        (BundleHeader([START], [(TIP, REF), (TIP, "refs/heads/main")]), "exactly the ref"),
        (BundleHeader([START], [(TIP, "refs/heads/main")]), "exactly the ref"),
        (BundleHeader([START], []), "exactly the ref"),
        (BundleHeader([], [(TIP, REF)]), "does not build on its start"),
        (BundleHeader([OTHER], [(TIP, REF)]), "does not build on its start"),
        (BundleHeader([START, OTHER], [(TIP, REF)]), "does not build on its start"),
    ],
)
def test_header_must_be_one_ref_on_the_start_alone(
    header: BundleHeader, problem: str | None
) -> None:
    got = header_problem(header, START, REF)
    assert (got is None) if problem is None else (got is not None and problem in got)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (Change("src/a.py", "100644", "100644"), None),
        (Change("x" * 255, "000000", "100644"), None),
        (Change("x" * 256, "000000", "100644"), "component is longer than 255"),
        (Change("/".join(["d" * 200] * 6), "000000", "100644"), "path longer than 1024"),
        (Change("vendor/lib", "000000", "160000"), "nested git repository"),
        (Change("vendor/lib", "100644", "160000"), "nested git repository"),
        (Change("vendor/sub", "160000", "160000"), None),  # a submodule bumped
        (Change("vendor/sub", "160000", "000000"), None),  # a submodule removed
    ],
)
def test_paths_the_host_cannot_take(change: Change, problem: str | None) -> None:
    got = path_problem([Change("ok.txt", "000000", "100644"), change])
    assert (got is None) if problem is None else (got is not None and problem in got)
