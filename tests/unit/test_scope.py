"""Scopes: gitwildmatch globs anchored at the repo root, violations, and overlaps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.core.scope import Overlap, Scope, Violations, check_changes, find_overlap, probe, under


@pytest.mark.parametrize(
    ("glob", "path", "covered"),
    [
        # Anchored at the root, unlike a slash-free .gitignore line.
        ("README.md", "README.md", True),
        ("README.md", "docs/README.md", False),
        ("/README.md", "README.md", True),
        ("*.md", "CHANGES.md", True),
        ("*.md", "docs/CHANGES.md", False),
        # ** crosses directories; * and ? do not.
        ("src/**", "src/a.py", True),
        ("src/**", "src/api/deep/a.py", True),
        ("src/**", "srcx/a.py", False),
        ("src/**", "lib/src/a.py", False),
        ("**/test_*.py", "test_a.py", True),
        ("**/test_*.py", "a/b/test_c.py", True),
        ("**/test_*.py", "a/b/c.py", False),
        ("src/**/models.py", "src/models.py", True),
        ("src/**/models.py", "src/a/b/models.py", True),
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "src/db/a.py", False),
        ("src/?.py", "src/a.py", True),
        ("src/?.py", "src/ab.py", False),
        ("src/[ab].py", "src/b.py", True),
        ("src/[ab].py", "src/c.py", False),
        # A directory pattern covers everything below it, with or without the slash.
        ("docs/", "docs/a.md", True),
        ("docs/", "docs/x/y.md", True),
        ("docs/", "docs2/a.md", False),
        ("src/db", "src/db/models.py", True),
        ("src/db", "src/dbx/models.py", False),
    ],
)
def test_covers(glob: str, path: str, covered: bool) -> None:
    assert Scope.of([glob]).covers(path) is covered


def test_no_scope_covers_everything() -> None:
    scope = Scope.of(None)
    assert scope.include is None
    assert all(scope.allows(p) for p in ["README.md", "a/b/c", ".github/x.yml"])


def test_empty_scope_covers_nothing() -> None:
    assert not Scope.of([]).covers("README.md")


def test_deny_wins_inside_the_scope() -> None:
    scope = Scope.of(["src/db/**"], deny=["src/db/migrations/0001_*"])
    assert scope.allows("src/db/migrations/0002_more.py")
    assert scope.covers("src/db/migrations/0001_init.py")
    assert scope.denies("src/db/migrations/0001_init.py")
    assert not scope.allows("src/db/migrations/0001_init.py")
    assert not scope.denies("src/db/models.py")


def test_negated_pattern_inside_include() -> None:
    scope = Scope.of(["src/**", "!src/gen/**"])
    assert scope.covers("src/a.py")
    assert not scope.covers("src/gen/a.py")


def test_describe() -> None:
    assert Scope.of(None).describe() == "everything"
    assert Scope.of(["a/**", "b"], ["a/x"]).describe() == "a/**, b (deny a/x)"


@pytest.mark.parametrize(
    ("path", "directory", "inside"),
    [
        ("contracts", "contracts", True),
        ("contracts/api.md", "contracts", True),
        ("contracts/api.md", "/contracts/", True),
        ("contractsx/api.md", "contracts", False),
        ("src/contracts/a", "contracts", False),
    ],
)
def test_under(path: str, directory: str, inside: bool) -> None:
    assert under(path, directory) is inside


def test_check_changes_classifies_each_path() -> None:
    scope = Scope.of(["src/db/**"], deny=["src/db/migrations/0001_*"])
    changed = [
        "src/db/models.py",
        "README.md",
        "src/db/migrations/0001_init.py",
        "contracts/api.md",
        "contractsx/notes.md",
        "src/api/app.py",
    ]
    got = check_changes(scope, changed, "contracts")
    assert got == Violations(
        outside_scope=("README.md", "contractsx/notes.md", "src/api/app.py"),
        denied=("src/db/migrations/0001_init.py",),
        shared=("contracts/api.md",),
    )
    assert got
    assert got.paths() == [
        "README.md",
        "contracts/api.md",
        "contractsx/notes.md",
        "src/api/app.py",
        "src/db/migrations/0001_init.py",
    ]


def test_shared_dir_is_never_writable_even_in_scope() -> None:
    got = check_changes(Scope.of(None), ["contracts/api.md", "src/a.py"], "contracts")
    assert got == Violations(shared=("contracts/api.md",))


def test_no_violations_is_falsy() -> None:
    got = check_changes(Scope.of(["src/**"]), ["src/a.py", "src/b/c.py"], None)
    assert got == Violations()
    assert not got
    assert got.paths() == []


@pytest.mark.parametrize(
    ("glob", "expected"),
    [
        ("README.md", "README.md"),
        ("src/*.py", "src/x.py"),
        ("src/**", "src/x/x"),
        ("src/db/", "src/db/x"),
        ("**/t.py", "x/t.py"),
        ("src/[abc]/m.py", "src/a/m.py"),
        ("a?b", "axb"),
        ("/abs/*.md", "abs/x.md"),
        ("!src/gen/**", None),
    ],
)
def test_probe(glob: str, expected: str | None) -> None:
    assert probe(glob) == expected
    if expected is not None:  # a probe is a path its own glob covers
        assert Scope.of([glob]).covers(expected)


BASE = [
    "README.md",
    "docs/index.md",
    "src/app.py",
    "src/api/routes.py",
    "src/api/schema.py",
    "src/db/models.py",
]


def test_disjoint_directories_do_not_overlap() -> None:
    assert find_overlap("a", Scope.of(["src/api/**"]), "b", Scope.of(["src/db/**"]), BASE) is None


def test_nested_directories_overlap_and_list_the_common_files() -> None:
    got = find_overlap("a", Scope.of(["src/**"]), "b", Scope.of(["src/api/**"]), BASE)
    assert got == Overlap(
        "a", "b", (("src/**", "src/api/**"),), ("src/api/routes.py", "src/api/schema.py")
    )
    assert got.describe() == (
        "a and b overlap: 'src/**' ~ 'src/api/**'; both cover src/api/routes.py, src/api/schema.py"
    )


def test_star_in_a_directory_does_not_reach_its_subdirectories() -> None:
    assert find_overlap("a", Scope.of(["src/*.py"]), "b", Scope.of(["src/db/**"]), BASE) is None


def test_top_level_file_does_not_overlap_the_same_name_deeper() -> None:
    assert find_overlap("a", Scope.of(["index.md"]), "b", Scope.of(["docs/**"]), BASE) is None


def test_no_scope_overlaps_any_scope_with_a_path() -> None:
    got = find_overlap("all", Scope.of(None), "db", Scope.of(["src/db/**"]), BASE)
    assert got == Overlap("all", "db", (("**", "src/db/**"),), ("src/db/models.py",))
    one_file = find_overlap("all", Scope.of(None), "r", Scope.of(["README.md"]), [])
    assert one_file == Overlap("all", "r", (("**", "README.md"),), ())


def test_two_whole_repo_tasks_overlap_on_an_empty_repo() -> None:
    got = find_overlap("a", Scope.of(None), "b", Scope.of(None), [])
    assert got == Overlap("a", "b", (("**", "**"),), ())


def test_new_files_are_found_through_probes() -> None:
    # Nothing exists under src/ yet: the tasks would still both create src/api/... files.
    got = find_overlap("a", Scope.of(["src/**"]), "b", Scope.of(["src/api/**"]), [])
    assert got == Overlap("a", "b", (("src/**", "src/api/**"),), ())
    assert got.describe() == "a and b overlap: 'src/**' ~ 'src/api/**'"


def test_a_directory_and_a_file_in_it_overlap() -> None:
    got = find_overlap("a", Scope.of(["src/db"]), "b", Scope.of(["src/db/models.py"]), [])
    assert got is not None
    assert got.patterns == (("src/db", "src/db/models.py"),)


def test_deny_removes_the_overlap() -> None:
    a = Scope.of(["src/**"], deny=["src/api/**"])
    assert find_overlap("a", a, "b", Scope.of(["src/api/**"]), BASE) is None


def test_a_scope_of_no_globs_overlaps_nothing() -> None:
    assert find_overlap("a", Scope.of([]), "b", Scope.of(None), BASE) is None


def test_overlap_files_are_capped() -> None:
    paths = [f"src/f{i:03}.py" for i in range(120)]
    got = find_overlap("a", Scope.of(["src/**"]), "b", Scope.of(["src/*.py"]), paths)
    assert got is not None
    assert got.files == tuple(paths[:50])
    assert got.describe().endswith("both cover " + ", ".join(paths[:5]) + " ...")


_globs = st.sampled_from(
    ["src/**", "src/api/**", "src/db/", "src/*.py", "docs/**", "*.md", "**/test_*.py",
     "src/api/routes.py", "README.md", "src/db", "tests/**"]
)  # fmt: skip
_paths = st.sampled_from(
    ["README.md", "src/a.py", "src/api/routes.py", "src/db/m.py", "docs/i.md", "tests/test_a.py",
     "src/api/test_r.py", "x.md"]
)  # fmt: skip
_scopes = st.builds(
    Scope.of,
    st.none() | st.lists(_globs, max_size=3),
    st.lists(_globs, max_size=1),
)


@settings(max_examples=200, deadline=None)
@given(_scopes, _scopes, st.lists(_paths, max_size=6, unique=True))
def test_overlap_is_symmetric_and_sees_every_shared_file(
    a: Scope, b: Scope, base: list[str]
) -> None:
    ab = find_overlap("a", a, "b", b, base)
    ba = find_overlap("b", b, "a", a, base)
    assert (ab is None) == (ba is None)
    shared = [p for p in base if a.allows(p) and b.allows(p)]
    if shared:
        assert ab is not None
        assert list(ab.files) == shared


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("src/*.py", "src/a*"),
        ("*_test.py", "foo*"),
        ("src/**", "src/api/**"),
        ("lib/?.c", "lib/x*"),
    ],
)
def test_patterns_that_would_both_cover_a_new_file_overlap(a: str, b: str) -> None:
    # No file exists at base: the overlap is in the files the tasks may create.
    overlap = find_overlap("one", Scope.of([a]), "two", Scope.of([b]), [])
    assert overlap is not None and overlap.patterns == ((a, b),)


@pytest.mark.parametrize(
    ("a", "b"), [("src/*.py", "src/db/**"), ("docs/**", "src/**"), ("a/*.md", "a/*.txt")]
)
def test_patterns_with_no_common_path_do_not_overlap(a: str, b: str) -> None:
    assert find_overlap("one", Scope.of([a]), "two", Scope.of([b]), []) is None
