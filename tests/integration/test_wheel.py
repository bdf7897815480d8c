"""The built wheel works with no checkout in sight: recipes and policies come from the package.

Offline and quick: the wheel is built without build isolation and installed `--no-deps`; the
venv borrows this test venv's site-packages for the dependencies (a path line in a .pth, so the
checkout's editable hook there never runs). CI's wheel step (.ci/run) does the full user path:
dependencies resolved from the package index, then `runner images build && runner demo`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from runner.images import BASE_TAG, PROXY_TAG, SANDBOX_TAG

ROOT = Path(__file__).resolve().parents[2]


def sh(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv outside the checkout with the wheel installed: its bin directory."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools' build/ in the checkout could hold stale files.
    src = tmp / "src"
    src.mkdir()
    for name in ("runner", "pyproject.toml", "README.md"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, src / name)
    shutil.rmtree(src / "runner" / "__pycache__", ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    sh(*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("runner-*.whl")
    venv = tmp / "venv"
    sh(sys.executable, "-m", "venv", venv, cwd=tmp)
    sh(venv / "bin/python", "-m", "pip", "-q", "install", "--no-deps", "--no-index", wheel, cwd=tmp)
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = sh(venv / "bin/python", "-c", code, cwd=tmp)
    (Path(purelib.strip()) / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def clean_env(home: Path) -> dict[str, str]:
    """No path of the checkout reaches the installed runner."""
    drop = ("PYTHONPATH", "RUNNER_IMAGES_DIR", "RUNNER_POLICIES_DIR", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in drop} | {"HOME": str(home)}


def test_the_installed_package_carries_its_recipes_and_policies(
    installed: Path, tmp_path: Path
) -> None:
    code = (
        "import runner, runner.settings as s; st = s.Settings(); "
        "print(runner.__file__, st.images_dir, st.policies_dir, sep='\\n')"
    )
    where = sh(installed / "python", "-c", code, cwd=tmp_path, env=clean_env(tmp_path)).split()
    site = installed.parent / "lib"
    assert all(Path(p).is_relative_to(site) for p in where), where
    images, policies = Path(where[1]), Path(where[2])
    assert sorted(p.name for p in images.iterdir()) == ["base", "proxy", "sandbox"]
    assert (policies / "default.yaml").read_bytes() == (ROOT / "policies/default.yaml").read_bytes()
    version = sh(installed / "runner", "--version", cwd=tmp_path, env=clean_env(tmp_path))
    assert version.startswith("runner ")


def test_images_build_and_demo_from_anywhere(installed: Path, tmp_path: Path, images: None) -> None:
    env = clean_env(tmp_path)
    built = sh(installed / "runner", "images", "build", cwd=tmp_path, env=env)
    # Built from the package's own recipes (the same files as the checkout's, so in CI they
    # are reused; another checkout on the same daemon may have rebuilt one meanwhile).
    for tag in (BASE_TAG, SANDBOX_TAG, PROXY_TAG):
        assert re.search(rf"^{re.escape(tag)}: (up to date|built) \(sha256:", built, re.M), built

    out = sh(installed / "runner", "demo", "--keep", tmp_path / "demo", cwd=tmp_path, env=env)
    assert "demo: OK" in out
