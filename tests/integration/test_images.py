"""runner/images.py against the real Docker daemon: builds (no pull), reuse, image contents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from runner.images import BASE_TAG, HASH_LABEL, PROXY_TAG, SANDBOX_TAG, ImageInfo, build_images
from runner.settings import package_data

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
