"""Shared fixtures: real servers started on free loopback ports, and the CI rule.

A test that needs a real part (redis-server, a Celery worker, uvicorn) fails under
``CI=true`` when the part cannot start, and skips with a message elsewhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, NoReturn

import pytest

IN_CI = os.environ.get("CI") == "true"
HERE = Path(__file__).resolve().parent


def missing_part(what: str) -> NoReturn:
    """Fails in CI, skips elsewhere, naming the part that could not start."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: a real part that cannot start fails the test)")
    pytest.skip(f"{what}; skipping outside CI")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server (the tests that kill Redis must not kill the shared one)."""

    def __init__(self, port: int, proc: "subprocess.Popen[bytes]") -> None:
        self.port = port
        self.proc = proc
        self.url = f"redis://127.0.0.1:{port}"

    @classmethod
    def start(cls, port: int = 0) -> "RedisServer":
        exe = shutil.which("redis-server")
        if exe is None:
            missing_part("redis-server is not installed")
        port = port or free_port()
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--logfile", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return cls(port, proc)
            except OSError:
                time.sleep(0.05)
        proc.kill()
        missing_part(f"redis-server did not answer on port {port}")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The redis-server ``.ci/run`` started (BACKSTOP_REDIS_URL), or one of our own."""
    url = os.environ.get("BACKSTOP_REDIS_URL")
    if url:
        yield url
        return
    server = RedisServer.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture()
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def tree() -> Iterator[Path]:
    """A fresh directory private to this test (mode 0700, as a sweep root should be)."""
    path = Path(tempfile.mkdtemp(prefix="backstop-py-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def python_exe() -> str:
    return sys.executable
