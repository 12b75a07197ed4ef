"""Real processes for the end-to-end tests: Celery workers and beat, uvicorn.

Each is started with its output in a log file (shown when a test fails) and stopped by
the fixture that started it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from conftest import missing_part

HERE = Path(__file__).resolve().parent


class Proc:
    def __init__(self, name: str, argv: List[str], env: Dict[str, str], cwd: Path) -> None:
        self.name = name
        self.log = Path(tempfile.mkstemp(prefix=f"backstop-{name}-", suffix=".log")[1])
        full_env = {**os.environ, **env}
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(cwd), str(HERE / "apps"), full_env.get("PYTHONPATH", "")])
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(
                argv, env=full_env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self.log.unlink(missing_ok=True)


def celery(args: List[str], app: str, env: Dict[str, str], cwd: Optional[Path] = None) -> Proc:
    try:
        import celery as _  # noqa: F401
    except ImportError:
        missing_part("celery is not installed")
    argv = [sys.executable, "-m", "celery", "-A", app, *args]
    return Proc(f"celery-{args[0]}", argv, env, cwd or HERE / "apps")


def wait_for_workers(app, proc: Proc, count: int = 1, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    """Until ``count`` workers answer a ping; fails (CI) or skips if the worker died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            missing_part(f"{proc.name} exited at start:\n{proc.output()[-3000:]}")
        if len(app.control.ping(timeout=0.5) or []) >= count:
            return
    missing_part(f"{proc.name} did not answer a ping in {timeout} s:\n{proc.output()[-3000:]}")
