"""Build the runner's own images (images/base, images/sandbox, images/proxy) without pulling.

runner/base:1 is bootstrapped from the host's Debian mirror with mmdebstrap and imported
through the Docker API, because this runner must work where no container registry is
reachable. runner/sandbox:1 and runner/proxy:1 (the egress proxy) are plain `docker build`s
FROM it. Each image carries a hash of its recipe as a label, so an unchanged recipe reuses
the image instead of rebuilding it.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests
from docker.models.images import Image

from runner.core.plan import PlanDoc
from runner.errors import InputError, PlanError, SandboxError

BASE_TAG = "runner/base:1"
SANDBOX_TAG = "runner/sandbox:1"
PROXY_TAG = "runner/proxy:1"
LABEL = "runner.image"
HASH_LABEL = "runner.image.hash"
SUITE = "bookworm"
# What `docker import` cannot take from a tarball: the config debian:bookworm-slim has.
_IMPORT_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["bash"]',
]
_TAIL = 20  # lines of a failed build's log shown in the error


@dataclass(frozen=True)
class ImageInfo:
    tag: str
    id: str
    built: bool  # False when an existing image with the same recipe hash was reused


def build_images(
    client: docker.DockerClient,
    images_dir: Path,
    *,
    force: bool = False,
    from_registry: bool = False,
    progress: Callable[[str], None] = print,
    apt_sources: Path | None = None,
) -> list[ImageInfo]:
    """Build (or reuse) runner/base:1, then runner/sandbox:1 and runner/proxy:1 on it;
    return all three, base first.

    apt_sources: the apt sources file mmdebstrap reads the mirror from (default: the host's).
    """
    base_dir, sandbox_dir = images_dir / "base", images_dir / "sandbox"
    proxy_dir = images_dir / "proxy"
    needed = ["Dockerfile", "packages.txt", "dpkg-excludes.cfg"]
    on_base = [sandbox_dir / "Dockerfile", proxy_dir / "Dockerfile", proxy_dir / "runner-proxy"]
    for path in [*(base_dir / name for name in needed), *on_base]:
        if not path.is_file():
            raise InputError(
                f"{path} is missing",
                hint="RUNNER_IMAGES_DIR names a folder without the runner's recipes, or the "
                "installed package is damaged (reinstall it)",
            )
    replaced: list[Image] = []
    try:
        client.ping()
        # The method is part of the recipe: switching it gives a different image.
        method = "registry" if from_registry else f"mmdebstrap {SUITE}"
        base_hash = _recipe_hash(base_dir, method)
        base = _reusable(client, BASE_TAG, base_hash, force, replaced)
        if base is None:
            labels = {LABEL: "1", HASH_LABEL: base_hash}
            if from_registry:
                _docker_build(client, base_dir, BASE_TAG, labels, force, progress)
            else:
                _bootstrap_base(client, base_dir, labels, progress, apt_sources)
        base_id = str(client.images.get(BASE_TAG).attrs["Id"])
        # Chaining the base's id (not only its hash) makes any rebuilt base, forced or
        # built by another tool, rebuild the images on top of it.
        built_on = [
            _on_base(client, folder, tag, base_id, force, replaced, progress)
            for folder, tag in ((sandbox_dir, SANDBOX_TAG), (proxy_dir, PROXY_TAG))
        ]
        # Children before parents, or Docker refuses to remove the old base.
        for old in reversed(replaced):
            if old.attrs["Id"] not in (base_id, *(info.id for info in built_on)):
                with contextlib.suppress(docker.errors.APIError):  # still used: it stays
                    old.remove()
    except docker.errors.APIError as exc:
        raise SandboxError(f"Docker refused a step of the image build: {exc}") from exc
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise SandboxError(
            f"cannot reach Docker to build the images: {exc}",
            hint="is the Docker daemon running and reachable (`docker info`)?",
        ) from exc
    return [ImageInfo(BASE_TAG, base_id, built=base is None), *built_on]


def _on_base(
    client: docker.DockerClient,
    folder: Path,
    tag: str,
    base_id: str,
    force: bool,
    replaced: list[Image],
    progress: Callable[[str], None],
) -> ImageInfo:
    """Build (or reuse) an image whose Dockerfile starts FROM runner/base:1."""
    recipe = _recipe_hash(folder, base_id)
    image = _reusable(client, tag, recipe, force, replaced)
    if image is None:
        # LABEL runner.image=1 comes from the base; each label is one more build step
        # (about 1.5 s on fuse-overlayfs), so only the hash is added here.
        _docker_build(client, folder, tag, {HASH_LABEL: recipe}, force, progress)
    return ImageInfo(tag, str(client.images.get(tag).attrs["Id"]), built=image is None)


def _recipe_hash(folder: Path, *extra: str) -> str:
    """sha256 over the folder's files (path, size, bytes) and extra strings; docs excluded."""
    digest = hashlib.sha256()
    for text in extra:
        digest.update(text.encode() + b"\0")
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix != ".md"):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(folder).as_posix()}\0{len(data)}\0".encode() + data)
    return "sha256:" + digest.hexdigest()


def _reusable(
    client: docker.DockerClient, tag: str, recipe: str, force: bool, replaced: list[Image]
) -> Image | None:
    """The existing image to reuse, or None (and remember it as replaced) to rebuild."""
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    if not force and image.labels.get(HASH_LABEL) == recipe:
        return image
    if image.labels.get(LABEL) == "1":  # only ever clean up our own images
        replaced.append(image)
    return None


def _bootstrap_base(
    client: docker.DockerClient,
    base_dir: Path,
    labels: dict[str, str],
    progress: Callable[[str], None],
    apt_sources: Path | None,
) -> None:
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise InputError(
            "mmdebstrap is not installed; it builds the base image without a registry",
            hint="apt-get install mmdebstrap (or build from a registry: from_registry=True)",
        )
    sources = _apt_sources(apt_sources)
    packages = re.sub(r"#.*", "", (base_dir / "packages.txt").read_text()).split()
    progress(f"building {BASE_TAG} with mmdebstrap from the mirror in {sources} (about 20 s)")
    with tempfile.TemporaryDirectory(prefix="runner-base-") as tmp:
        tar = Path(tmp) / "rootfs.tar"
        argv = [
            mmdebstrap, "--variant=minbase", f"--include={','.join(packages)}",
            f"--dpkgopt={base_dir / 'dpkg-excludes.cfg'}", SUITE, str(tar), str(sources),
        ]  # fmt: skip
        tail: deque[str] = deque(maxlen=_TAIL)
        with subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace",
        ) as proc:  # fmt: skip
            assert proc.stdout is not None
            for line in proc.stdout:
                tail.append(line.rstrip())
                if line.startswith("I: "):  # its step lines; apt's chatter stays in the tail
                    progress("  " + line.rstrip())
        if proc.returncode != 0:
            log = "\n".join(tail)
            raise SandboxError(
                f"mmdebstrap failed (exit {proc.returncode}) building {BASE_TAG}:\n{log}",
                hint="check the mirror in the apt sources file and that this runs as root",
            )
        # Import only a finished tarball: a stream cut short would import a broken rootfs.
        label_change = "LABEL " + " ".join(f'{k}="{v}"' for k, v in labels.items())
        repo, tag = BASE_TAG.rsplit(":", 1)
        progress(f"importing {BASE_TAG} ({tar.stat().st_size // 2**20} MiB)")
        client.api.import_image(
            src=str(tar), repository=repo, tag=tag, changes=[*_IMPORT_CHANGES, label_change]
        )


def _apt_sources(given: Path | None) -> Path:
    """The given or the host's Debian sources: the mirror is read, never written in the project."""
    apt = Path("/etc/apt")
    found = [apt / "sources.list.d/debian.sources", *sorted(apt.glob("sources.list.d/*.sources"))]
    for path in [given] if given else [*found, apt / "sources.list"]:
        if path.is_file() and SUITE in path.read_text(errors="replace"):
            return path
    raise InputError(
        f"no apt sources file listing Debian {SUITE} at {given or apt}",
        hint=f"give a sources file that lists {SUITE}, or build from a registry (from_registry)",
    )


def _docker_build(
    client: docker.DockerClient,
    context: Path,
    tag: str,
    labels: dict[str, str],
    force: bool,
    progress: Callable[[str], None],
    dockerfile: str = "Dockerfile",
) -> None:
    """`docker build` with the legacy builder; no pull of a FROM image that exists locally.

    force skips the build cache too, or a forced build would return the same cached layers.
    """
    progress(f"building {tag} from {context / dockerfile}")
    hint = f"the log above ends at the failing step of {context / dockerfile}"
    if tag == BASE_TAG:  # only the registry path builds the base with a Dockerfile
        hint = "FROM debian:bookworm-slim needs a registry; without one, use mmdebstrap (default)"
    tail: deque[str] = deque(maxlen=_TAIL)
    chunks = client.api.build(
        path=str(context), dockerfile=dockerfile, tag=tag, labels=labels, rm=True,
        forcerm=True, pull=False, nocache=force, decode=True,
    )  # fmt: skip
    for chunk in chunks:
        if "error" in chunk:
            log = "\n".join(tail)
            raise SandboxError(
                f"docker build of {tag} failed: {str(chunk['error']).strip()}\n{log}",
                hint=hint,
            )
        for line in str(chunk.get("stream", "")).splitlines():
            if line.strip():
                tail.append(line)
            if line.startswith("Step "):  # the rest (apt-get's chatter) only if it fails
                progress("  " + line)


# A name Docker accepts for a local image: [host[:port]/]path[:tag], lower-case path.
_NAME = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"
)


def from_lines(text: str) -> list[tuple[int, str]]:
    """(line number, image) of each FROM of a Dockerfile that names an image: not a stage
    of the same file, not `scratch`, not built from an ARG (Docker resolves those)."""
    found: list[tuple[int, str]] = []
    stages: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].upper() != "FROM":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]  # --platform=...
        if not args:
            continue
        image = args[0]
        if len(args) >= 3 and args[1].upper() == "AS":
            stages.add(args[2].lower())
        if image.lower() not in stages and image != "scratch" and "$" not in image:
            found.append((number, image))
    return found


def build_user_image(
    client: docker.DockerClient,
    dockerfile: Path,
    tag: str,
    *,
    force: bool = False,
    progress: Callable[[str], None] = print,
) -> ImageInfo:
    """Build the user's image (their project's dependencies on top of runner/sandbox:1) from
    their Dockerfile, its folder the build context. Offline: every FROM must name an image
    this daemon already has; nothing is pulled. Docker's layer cache makes a rebuild cheap.
    """
    if not dockerfile.is_file():
        raise InputError(f"{dockerfile}: no such file", hint="give the path of your Dockerfile")
    if not _NAME.match(tag):
        raise InputError(
            f"--tag {tag!r} is not an image name Docker accepts",
            hint="lower-case name with an optional :tag, e.g. myproject/sandbox:1",
        )
    if tag in (BASE_TAG, SANDBOX_TAG, PROXY_TAG):
        raise InputError(
            f"--tag {tag} is one of the runner's own images", hint="give your image its own name"
        )
    text = dockerfile.read_text(errors="replace")
    bases = from_lines(text)
    if not any(line.split()[:1] in (["FROM"], ["from"]) for line in text.splitlines()):
        raise InputError(f"{dockerfile}: no FROM line", hint=f"start it with `FROM {SANDBOX_TAG}`")
    try:
        client.ping()
        for number, image in bases:
            try:
                base = client.images.get(image)
            except docker.errors.ImageNotFound:
                raise InputError(
                    f"{dockerfile}:{number}: FROM {image}: no such image on this Docker "
                    "daemon (nothing is pulled)",
                    hint=f"base it on {SANDBOX_TAG} (`runner images build` makes it), or "
                    "build or load that image first",
                ) from None
            if LABEL not in base.labels:
                progress(
                    f"note: {image} is not one of the runner's images; tasks run in it as uid "
                    "10001 in /work with a read-only root, as on "
                    f"{SANDBOX_TAG}"
                )
        # Own label: never taken for one of the runner's images (those are runner.image=1).
        context = dockerfile.resolve().parent
        _docker_build(
            client, context, tag, {LABEL: "user"}, force, progress, dockerfile.resolve().name
        )
        return ImageInfo(tag, str(client.images.get(tag).attrs["Id"]), built=True)
    except docker.errors.APIError as exc:
        raise SandboxError(f"Docker refused to build {tag}: {exc}") from exc
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise SandboxError(
            f"cannot reach Docker to build {tag}: {exc}",
            hint="is the Docker daemon running and reachable (`docker info`)?",
        ) from exc


def check_plan_images(doc: PlanDoc, own: Iterable[str], present: Callable[[str], bool]) -> None:
    """Raise PlanError naming, at its line, each image the plan names that the daemon does
    not have (present: the daemon's answer), and each of the runner's own it needs (own)."""
    plan = doc.plan
    named = [(("image",), plan.image)] + [
        (("tasks", i, "image"), t.image) for i, t in enumerate(plan.tasks) if t.image
    ]
    problems: dict[str, None] = {}  # a dict: one line per place, in plan order
    for loc, image in named:
        if not present(image):
            problems[doc.problem(loc, f"image {image} is not on this Docker daemon")] = None
    for image in own:
        if image not in (i for _, i in named) and not present(image):
            said = f"{doc.source}: the runner's image {image} is not on this Docker daemon"
            problems[said] = None
    if problems:
        raise PlanError(
            list(problems),
            hint="`runner images build` makes the runner's images; "
            "`runner images build --from DOCKERFILE --tag NAME` makes yours",
        )
