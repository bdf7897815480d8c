"""Docker's faults become the runner's errors, in one place; transient ones are retried, answers
never. Against a stand-in daemon the test starts (tests/fake_daemon.py): no real daemon needed."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from runner.errors import InputError, SandboxError
from runner.sandbox.base import SandboxBackend
from runner.sandbox.docker import RETRIES, DockerBackend, connect
from runner.sandbox.factory import BACKENDS, backend_class, make_backend
from runner.settings import Settings
from tests.fake_daemon import FakeDaemon, Reply, fake_daemon, handshake, hang


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)


# docker-py leaves the socket of a failed unix connect unclosed (its UnixHTTPConnection): not
# ours to close; collected here so the warning is not blamed on a later test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_no_daemon_is_one_line_naming_where_and_how_to_start_it(
    monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/runner-no-such-daemon.sock")
    with pytest.raises(SandboxError) as caught:
        make_backend(Settings(docker_timeout=5))
    said = str(caught.value)
    del caught  # its context holds docker-py's frames, and with them the socket
    gc.collect()
    assert "\n" not in said
    assert (
        "cannot reach the Docker daemon at DOCKER_HOST=unix:///tmp/runner-no-such-daemon.sock"
        in said
    )
    assert "sudo systemctl start docker" in said and "dockerd" in said


def test_a_hung_daemon_ends_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    with fake_daemon(hang) as daemon:
        monkeypatch.setenv("DOCKER_HOST", daemon.host)
        started = time.monotonic()
        with pytest.raises(SandboxError) as caught:
            connect(timeout=1)
    assert time.monotonic() - started < 10
    said = str(caught.value)
    assert said.startswith("the Docker daemon did not answer within 1 s while connecting (")
    assert f"DOCKER_HOST={daemon.host}" in said and "\n" not in said


@dataclass
class Stand:
    """A stand-in daemon: `replies` are asked in order ("next": ask the next one), then the
    handshake; anything else gets no answer."""

    fake: FakeDaemon
    replies: list[Callable[[str, str], Any]] = field(default_factory=list)
    made: list[DockerBackend] = field(default_factory=list)

    def route(self, method: str, path: str) -> Reply:
        for reply in self.replies:
            said = reply(method, path)
            if said != "next":
                return cast(Reply, said)
        return handshake(method, path)

    def backend(self, timeout: float = 5) -> DockerBackend:
        self.made.append(DockerBackend(connect(timeout), "runner/sandbox:1"))
        return self.made[-1]


@pytest.fixture
def stand(monkeypatch: pytest.MonkeyPatch, no_env: None) -> Iterator[Stand]:
    holder: list[Stand] = []
    with fake_daemon(lambda m, p: holder[0].route(m, p)) as fake:
        monkeypatch.setenv("DOCKER_HOST", fake.host)
        holder.append(Stand(fake))
        yield holder[0]
        for backend in holder[0].made:
            backend.close()


def test_a_daemon_hung_mid_run_names_what_was_being_done(stand: Stand) -> None:
    backend, fake = stand.backend(timeout=1), stand.fake
    with pytest.raises(SandboxError) as caught:
        backend.runs()  # /containers/json gets no answer (the handshake did)
    assert str(caught.value).startswith(
        "the Docker daemon did not answer within 1 s while listing the runs'"
    )
    assert fake.count("GET", "/containers/json") == 1  # a hung daemon is not asked again


def test_transient_errors_are_retried_with_each_retry_logged(stand: Stand) -> None:
    failures = iter([True, True])

    def busy(method: str, path: str) -> Any:
        if path in ("/containers/json", "/networks"):
            if path == "/containers/json" and next(failures, False):
                return 500, {"message": "server is too busy"}
            return 200, []
        return "next"

    stand.replies.append(busy)
    backend, fake = stand.backend(), stand.fake
    with capture_logs() as logs:
        assert backend.runs() == set()
    assert fake.count("GET", "/containers/json") == 3
    retries = [e for e in logs if e["event"] == "docker API call failed; retrying"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert all(e["log_level"] == "warning" and "too busy" in e["error"] for e in retries)


def test_a_daemon_failing_for_good_is_a_clear_error_after_bounded_retries(
    stand: Stand,
) -> None:
    full = (500, {"message": "disk full"})
    stand.replies.append(lambda m, p: full if p == "/networks" else "next")
    stand.replies.append(lambda m, p: (200, []) if p == "/containers/json" else "next")
    backend, fake = stand.backend(), stand.fake
    with pytest.raises(SandboxError) as caught:
        backend.cleanup("r1")
    assert fake.count("GET", "/networks") == RETRIES
    assert "the Docker daemon failed while removing the containers and networks of run r1" in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("status", "error", "said"),
    [
        (409, SandboxError, "Docker said no while creating the network of run r1: taken (409)"),
        (400, InputError, "the Docker daemon refused creating the network of run r1: bad"),
        (500, SandboxError, "no such"),  # a 500 that is an answer ("no such ..."): not retried
    ],
)
def test_answers_are_never_retried(
    stand: Stand, status: int, error: type[Exception], said: str
) -> None:
    message = {409: "taken", 400: "bad", 500: "no such driver: x"}[status]
    stand.replies.append(
        lambda m, p: (status, {"message": message}) if p == "/networks/create" else "next"
    )
    backend, fake = stand.backend(), stand.fake
    with pytest.raises(error) as caught:
        backend.create_network("r1")
    assert type(caught.value) is error and said in str(caught.value)
    assert fake.count("POST", "/networks/create") == 1


def test_a_missing_image_is_an_answer(stand: Stand) -> None:
    def images(method: str, path: str) -> Any:
        if path == "/images/mine:1/json":
            return 404, {"message": "No such image: mine:1"}
        if path.startswith("/images/"):
            return 200, {"Id": "sha256:" + "0" * 64}
        return "next"

    stand.replies.append(images)
    backend, fake = stand.backend(), stand.fake
    assert backend.missing_images(["mine:1", "runner/sandbox:1"]) == ["mine:1"]
    assert fake.count("GET", "/images/mine:1/json") == 1


def test_runtimes_come_from_the_daemon(stand: Stand) -> None:
    runsc = {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}
    info = {"Runtimes": {"runc": {"path": "runc"}, "runsc": runsc}}
    stand.replies.append(lambda m, p: (200, info) if p == "/info" else "next")
    backend = stand.backend()
    assert backend.runtimes()["runsc"] == runsc


def test_the_factory_imports_a_backend_only_when_asked() -> None:
    code = (
        "import sys, runner.sandbox.factory, runner.cli; "
        "print('docker' in sys.modules, 'runner.sandbox.docker' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert backend_class("docker") is DockerBackend
    assert sorted(BACKENDS) == ["docker", "swarm"]


def test_an_unknown_backend_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown sandbox backend 'nomad'"):
        backend_class("nomad")


def test_every_public_method_of_the_docker_backend_is_translated() -> None:
    # A method added later without the translation would let docker's errors out.
    plain = {"from_settings", "close", "required_images"}  # connect translates; no API call
    public = {
        name
        for name, value in vars(DockerBackend).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, classmethod))
    }
    assert public - plain, "no methods found"
    untranslated = {
        n for n in public - plain if not hasattr(getattr(DockerBackend, n), "__wrapped__")
    }
    assert untranslated == set()
    assert set(SandboxBackend.__abstractmethods__) <= public
