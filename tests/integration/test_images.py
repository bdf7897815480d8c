"""runner/images.py against the real Docker daemon: builds (no pull), reuse, image contents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from runner.images import (
    BASE_TAG,
    HASH_LABEL,
    LABEL,
    PROXY_TAG,
    SANDBOX_TAG,
    ImageInfo,
    build_images,
)
from runner.settings import package_data
from tests.integration.conftest import RunPlan, make_repo, runner_cli

IMAGES_DIR = package_data("images")


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="module")
def built(client: docker.DockerClient) -> list[ImageInfo]:
    """The images as they are after one build_images call (built now or reused)."""
    return build_images(client, IMAGES_DIR, progress=lambda line: None)


def run(client: docker.DockerClient, *argv: str, cache_volume: str | None = None) -> str:
    """stdout of argv in a throwaway, offline runner/sandbox:1 container."""
    volumes = {cache_volume: {"bind": "/cache", "mode": "rw"}} if cache_volume else None
    output = client.containers.run(
        SANDBOX_TAG, list(argv), network_mode="none", volumes=volumes, remove=True
    )
    assert isinstance(output, bytes)
    return output.decode().strip()


def test_second_build_reuses_every_image(
    client: docker.DockerClient, built: list[ImageInfo]
) -> None:
    again = build_images(client, IMAGES_DIR, progress=lambda line: None)

    assert [info.tag for info in again] == [BASE_TAG, SANDBOX_TAG, PROXY_TAG]
    assert [info.built for info in again] == [False, False, False]
    assert [info.id for info in again] == [info.id for info in built]


def test_images_carry_the_runner_labels(
    client: docker.DockerClient, built: list[ImageInfo]
) -> None:
    for info in built:
        labels = client.images.get(info.tag).labels
        assert labels["runner.image"] == "1"
        assert labels[HASH_LABEL].startswith("sha256:")
    hashes = {client.images.get(info.tag).labels[HASH_LABEL] for info in built}
    assert len(hashes) == 3  # each image's own hash, not the one inherited from the base


def test_sandbox_runs_as_uid_10001_in_work_with_home(
    client: docker.DockerClient, built: list[ImageInfo]
) -> None:
    assert run(client, "sh", "-c", 'echo "$(id -u):$(id -g) $PWD $HOME"') == (
        "10001:10001 /work /home/sandbox"
    )


def test_sandbox_has_git_and_python3(client: docker.DockerClient, built: list[ImageInfo]) -> None:
    assert run(client, "git", "--version").startswith("git version ")
    assert run(client, "python3", "-c", "import sys; print(sys.version_info[0])") == "3"


def test_sandbox_has_pip_and_venv(client: docker.DockerClient, built: list[ImageInfo]) -> None:
    """A task installs its project's dependencies into a venv of its own (offline here)."""
    script = "python3 -m venv /tmp/venv && /tmp/venv/bin/python -m pip --version"
    assert run(client, "sh", "-c", script).startswith("pip ")


def test_sandbox_user_owns_work_out_and_cache(
    client: docker.DockerClient, built: list[ImageInfo]
) -> None:
    owners = run(client, "stat", "-c", "%n %u:%g", "/work", "/out", "/cache", "/home/sandbox")
    assert owners.splitlines() == [
        "/work 10001:10001",
        "/out 10001:10001",
        "/cache 10001:10001",
        "/home/sandbox 10001:10001",
    ]
    # The mount points that are mounted read-only exist, owned by root.
    assert run(client, "stat", "-c", "%u", "/shared", "/objects", "/runner").split() == ["0"] * 3


def test_new_volume_on_cache_is_writable_without_root(
    client: docker.DockerClient, built: list[ImageInfo]
) -> None:
    """A fresh named volume copies /cache's ownership from the image: no chown, no root."""
    volume = client.volumes.create(labels={"runner.test": "test_images"})
    try:
        script = "touch /cache/ok && stat -c %u /cache"
        assert run(client, "sh", "-c", script, cache_volume=volume.name) == "10001"
    finally:
        volume.remove(force=True)


def test_compose_file_is_accepted_by_docker_compose() -> None:
    import subprocess

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        ["docker-compose", "-f", str(root / "compose.yaml"), "config", "--services"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {"base", "sandbox", "proxy"}


def test_proxy_has_squid_and_runs_as_its_account(
    client: docker.DockerClient, built: list[ImageInfo]
) -> None:
    image = client.images.get(PROXY_TAG)
    assert image.attrs["Config"]["User"] == "13:13"
    out = client.containers.run(
        PROXY_TAG, ["-v"], entrypoint=["squid"], network_mode="none", remove=True
    )
    assert isinstance(out, bytes) and b"Squid Cache: Version 5." in out
    # Without a config it refuses to start, saying what is missing.
    with pytest.raises(docker.errors.ContainerError, match="RUNNER_PROXY_CONF"):
        client.containers.run(PROXY_TAG, network_mode="none", remove=True, stderr=True)


# --- Your own image (`runner images build --from`): the README's worked example, as written.

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE_TAG = "runner-test/deps-example:1"


def readme_block(language: str) -> str:
    """The first ```language block of the README's "Your project's dependencies" section."""
    section = README.read_text().split("## Your project's dependencies", 1)[1].split("\n## ", 1)[0]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def example_image(
    client: docker.DockerClient, built: list[ImageInfo], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("example") / "sandbox"
    folder.mkdir()
    (folder / "Dockerfile").write_text(readme_block("dockerfile"))
    proc = runner_cli("images", "build", "--from", str(folder / "Dockerfile"), "--tag", EXAMPLE_TAG)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{EXAMPLE_TAG}: built (sha256:")
    yield EXAMPLE_TAG
    client.images.remove(EXAMPLE_TAG, force=True)


def test_the_readme_example_image_runs_pytest_in_a_plan(
    example_image: str, run_plan: RunPlan
) -> None:
    plan = readme_block("yaml").replace("myproject/sandbox:1", example_image)
    files = {
        "calc.py": "def add(a, b):\n    return a + b\n",
        "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
    }
    run = run_plan(plan, files)

    assert run.code == 0, run.stderr
    assert run.task("tests")["status"] == "merged"
    report = run.show(run.result["integration_commit"], "pytest.txt")
    assert "1 passed" in report
    # Labelled as a user's image: the runner never takes it for one of its own.
    assert docker.from_env().images.get(example_image).labels[LABEL] == "user"


def test_a_from_naming_an_absent_image_is_one_clear_error(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("# deps\nFROM runner/sandbox:1 AS deps\nFROM runner-test/absent:9\n")
    proc = runner_cli("images", "build", "--from", str(dockerfile), "--tag", "runner-test/x:1")

    assert proc.returncode == 2
    assert f"{dockerfile}:3: FROM runner-test/absent:9: no such image" in proc.stderr
    assert "nothing is pulled" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--tag", "runner-test/x:1"], "--from and --tag go together"),
        (["--from", "Dockerfile"], "--from and --tag go together"),
        (["--from", "Dockerfile", "--tag", SANDBOX_TAG], "one of the runner's own images"),
        (["--from", "Dockerfile", "--tag", "Not A Name"], "not an image name"),
        (["--from", "absent/Dockerfile", "--tag", "runner-test/x:1"], "no such file"),
    ],
)
def test_build_from_refuses_bad_input(tmp_path: Path, args: list[str], said: str) -> None:
    (tmp_path / "Dockerfile").write_text("FROM runner/sandbox:1\n")
    proc = runner_cli("images", "build", *args, cwd=tmp_path)

    assert proc.returncode == 2, proc.stderr
    assert said in proc.stderr and "Traceback" not in proc.stderr


# --- `runner plan` checks the images against the daemon, when there is one.

ABSENT_PLAN = """\
base: HEAD
tasks:
  - id: a
    image: runner-test/absent:9
    run: "true"
"""


def test_plan_names_an_image_the_daemon_lacks(tmp_path: Path, built: list[ImageInfo]) -> None:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    (tmp_path / "plan.yaml").write_text(ABSENT_PLAN)
    proc = runner_cli("plan", "plan.yaml", "--repo", str(repo), cwd=tmp_path)

    assert proc.returncode == 2
    said = "plan.yaml:4: tasks[0](a).image: image runner-test/absent:9 is not on this Docker daemon"
    assert said in proc.stderr and "runner images build --from" in proc.stderr


def test_plan_without_a_daemon_says_the_images_were_not_checked(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"README.md": "x\n"})
    (tmp_path / "plan.yaml").write_text(ABSENT_PLAN)
    no_daemon = {"DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    proc = runner_cli("plan", "plan.yaml", "--repo", str(repo), cwd=tmp_path, env=no_daemon)

    assert proc.returncode == 0, proc.stderr
    assert f"not checked: images runner-test/absent:9, {SANDBOX_TAG} (no Docker daemon)" in (
        proc.stdout
    )


# --- `--version` and shell completion (the scripts speak the protocol `runner` answers).


def test_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    proc = runner_cli("--version")
    assert (proc.returncode, proc.stdout) == (0, f"runner {version('runner')}\n")


@pytest.mark.parametrize(
    ("shell", "env", "expected"),
    [
        ("bash", {"COMP_WORDS": "runner ima", "COMP_CWORD": "1"}, "images"),
        ("zsh", {"_TYPER_COMPLETE_ARGS": "runner images b"}, '"build"'),
        (
            "fish",
            {
                "_TYPER_COMPLETE_ARGS": "runner images build --fr",
                "_TYPER_COMPLETE_FISH_ACTION": "get-args",
            },
            "--from-registry",
        ),
    ],
)
def test_completion_script_and_its_answers(shell: str, env: dict[str, str], expected: str) -> None:
    script = runner_cli("completion", shell)
    assert script.returncode == 0, script.stderr
    assert f"_RUNNER_COMPLETE=complete_{shell}" in script.stdout

    # What the shell function asks `runner` when the user presses Tab.
    answer = runner_cli(env={"_RUNNER_COMPLETE": f"complete_{shell}", **env})
    assert answer.returncode == 0, answer.stderr
    assert expected in answer.stdout


def test_completion_of_an_unknown_shell_is_one_clear_error() -> None:
    proc = runner_cli("completion", "tcsh")
    assert proc.returncode == 2
    assert "no completion for shell 'tcsh'" in proc.stderr and "bash, zsh, fish" in proc.stderr
