"""JobWorkspace as a context manager: per-stage cleanup, removal on success and error."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from backstop_admission import JobWorkspace, WorkspaceError, sweep


def test_stages_are_removed_as_they_end_and_the_workspace_with_the_job(tree: Path) -> None:
    with JobWorkspace("job-1", base=tree) as job:
        assert stat.S_IMODE(os.stat(job.path).st_mode) == 0o700
        with job.stage("download") as download:
            Path(download, "clip.mp4").write_bytes(b"x" * 4096)
        assert not os.path.exists(download)
        build = job.stage_dir("build")
        Path(build, "out.mp4").write_bytes(b"y")
        report = job.finish_stage("build")
        assert report["files_removed"] == 1 and report["dirs_removed"] == 1
        assert job.finish_stage("never-started")["files_removed"] == 0
    assert job.closed
    assert not (tree / "job-1").exists()


def test_an_exception_removes_the_stage_and_the_workspace_and_goes_on(tree: Path) -> None:
    with pytest.raises(KeyError):
        with JobWorkspace("job-2", base=tree) as job:
            with job.stage("validation") as validation:
                Path(validation, "short.mp4").write_bytes(b"z")
                raise KeyError("the job failed")
    assert not (tree / "job-2").exists()


def test_keep_leaves_it_and_close_twice_is_harmless(tree: Path) -> None:
    job = JobWorkspace("job-3", base=tree)
    job.keep()
    assert job.close() is None
    assert (tree / "job-3").is_dir()
    assert job.close() is None
    with pytest.raises(WorkspaceError, match="already removed"):
        job.stage_dir("x")


def test_a_locked_workspace_is_left_alone_by_the_sweep(tree: Path) -> None:
    with JobWorkspace("job-4", base=tree) as job:
        f = Path(job.stage_dir("download"), "old.mp4")
        f.write_bytes(b"x")
        os.utime(f, (0, 0))
        sweep(tree, age_by="mtime")
        assert f.exists()


@pytest.mark.parametrize("job_id", ["../escape", "", "a/b", ".."])
def test_unsafe_job_ids_are_refused(tree: Path, job_id: str) -> None:
    with pytest.raises(WorkspaceError, match="job_id"):
        JobWorkspace(job_id, base=tree)


def test_a_base_writable_by_others_is_refused(tree: Path) -> None:
    shared = tree / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(WorkspaceError, match="refusing workspace base"):
        JobWorkspace("job-5", base=shared)
