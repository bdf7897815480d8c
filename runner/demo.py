"""The built-in main job: a sample service repo and a four-task, three-wave plan, run for real.

The tasks are shell scripts that edit files (no model needed), in the classic decomposition:
a data layer, an API layer that depends on it, independent docs, and tests that need all three.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FILES = {
    "README.md": "# items service\n\nA tiny service, built by four sandboxed tasks.\n",
    "contracts/api.md": (
        "# Items API (shared contract, read-only for every task)\n\n"
        "- `ItemStore.add(name) -> int` returns the new id\n"
        "- `ItemStore.get(id) -> dict | None`\n"
        "- `handle(store, method, path, body) -> (status, dict)` for GET /items/<id>, POST /items\n"
    ),
    "contracts/fields.txt": "id\nname\n",
    "src/service/__init__.py": '"""items service."""\n',
    "tests/__init__.py": "",
}

PLAN = """\
# A plan as a user writes it: four tasks, three waves, one shared contract.
base: HEAD
shared: contracts
concurrency: 2
on_overlap: refuse
on_conflict: stop
verify: {run: "PYTHONPATH=src python3 -m unittest discover -s tests -t . -q", timeout: 300}
tasks:
  - id: db
    scope: ["src/service/db/**"]
    run: |
      mkdir -p src/service/db
      fields=$(tr '\\n' ' ' < /shared/fields.txt)
      cat > src/service/db/__init__.py <<PY
      \"\"\"In-memory item store. Fields from the contract: $fields\"\"\"
      class ItemStore:
          def __init__(self):
              self._items = {}
          def add(self, name):
              new_id = len(self._items) + 1
              self._items[new_id] = {"id": new_id, "name": name}
              return new_id
          def get(self, item_id):
              return self._items.get(item_id)
      PY
      git add -A && git commit -q -m "db: in-memory item store"
  - id: docs
    scope: ["docs/**"]
    run: |
      mkdir -p docs
      { echo "# Items service"; echo; cat /shared/api.md; } > docs/index.md
      echo '{"tokens": 0}' > "$RUNNER_OUT/usage.json"
  - id: api
    depends_on: [db]
    scope: ["src/service/api/**"]
    run: |
      # Starts from the integration head that holds db's work: the store is here to build on.
      test -f src/service/db/__init__.py || { echo "db layer missing" >&2; exit 1; }
      mkdir -p src/service/api
      cat > src/service/api/__init__.py <<'PY'
      \"\"\"HTTP-like handlers over the item store (see /shared/api.md).\"\"\"
      def handle(store, method, path, body=None):
          if method == "POST" and path == "/items":
              return 201, {"id": store.add(body["name"])}
          if method == "GET" and path.startswith("/items/"):
              item = store.get(int(path.rsplit("/", 1)[1]))
              return (200, item) if item else (404, {"error": "not found"})
          return 405, {"error": "method not allowed"}
      PY
  - id: tests
    depends_on: [db, api, docs]
    scope: ["tests/**"]
    run: |
      cat > tests/test_api.py <<'PY'
      import unittest
      from service.api import handle
      from service.db import ItemStore

      class ApiTest(unittest.TestCase):
          def test_create_then_get(self):
              store = ItemStore()
              status, body = handle(store, "POST", "/items", {"name": "pen"})
              self.assertEqual(status, 201)
              self.assertEqual(handle(store, "GET", f"/items/{body['id']}")[1]["name"], "pen")

          def test_missing(self):
              self.assertEqual(handle(ItemStore(), "GET", "/items/9")[0], 404)
      PY
"""

GIT_ENV = {
    "GIT_AUTHOR_NAME": "demo",
    "GIT_AUTHOR_EMAIL": "demo@example.test",
    "GIT_COMMITTER_NAME": "demo",
    "GIT_COMMITTER_EMAIL": "demo@example.test",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
}


def make_sample(root: Path) -> tuple[Path, Path]:
    """Create root/repo (one commit on main) and root/plan.yaml; return both paths."""
    repo = root / "repo"
    for rel, text in FILES.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "items service: skeleton and contract"],
    ):
        subprocess.run(argv, cwd=repo, env=GIT_ENV, check=True, capture_output=True)
    plan = root / "plan.yaml"
    plan.write_text(PLAN)
    return repo, plan


EXPECTED_FILES = [
    "docs/index.md",
    "src/service/api/__init__.py",
    "src/service/db/__init__.py",
    "tests/test_api.py",
]


def run_demo(where: Path | None, settings: object) -> int:
    """Build images if needed, make the sample, run the plan, check the outcome. Exit code."""
    import tempfile

    from rich.console import Console

    from runner import git
    from runner import log as runner_log
    from runner.cli import execute
    from runner.coordinator import repo_key
    from runner.images import build_images
    from runner.report import print_summary, unwrapped
    from runner.sandbox.docker import DockerBackend, connect
    from runner.settings import Settings

    assert isinstance(settings, Settings)
    console = unwrapped(Console(highlight=False))
    live = sys.stderr.isatty()
    runner_log.configure(settings.log_format, quiet=settings.log_format == "auto")
    build_images(
        connect(settings.docker_timeout),
        settings.images_dir,
        progress=lambda m: console.print(m, highlight=False),
    )
    root = Path(tempfile.mkdtemp(prefix="runner-demo-")) if where is None else where
    root.mkdir(parents=True, exist_ok=True)
    repo, plan = make_sample(root)
    console.print(f"demo: sample repo {repo}, plan {plan}")
    result = execute(plan, repo, settings, live=live)
    # Each demo makes a new repo: its caches would never be warm again, so they go now.
    client = connect(settings.docker_timeout)
    DockerBackend(client, settings.collector_image).remove_caches(repo_key(repo))
    print_summary(result, console)
    head = result.integration_commit or result.base_commit
    present = set(git.tree_paths(repo, head))
    missing = [f for f in EXPECTED_FILES if f not in present]
    ok = result.exit_code == 0 and not missing
    if missing:
        console.print(f"[red]demo: integration branch lacks {', '.join(missing)}[/]")
    console.print(
        "demo: OK, every task merged, verify green, your checkout untouched"
        if ok
        else "[red]demo: FAILED[/]"
    )
    return 0 if ok else (result.exit_code or 1)
