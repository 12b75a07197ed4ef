"""Where the service finds Redis, its limits and its temp files (environment variables)."""

import os

from backstop_admission import Limits, RedisAdmission

REDIS_URL = os.environ.get("MAKE_VIDEO_REDIS", "redis://127.0.0.1:6379/0")
BROKER_URL = os.environ.get("MAKE_VIDEO_BROKER", REDIS_URL)
NAME = os.environ.get("MAKE_VIDEO_NAME", "make-video")
LIMITS = os.environ.get("MAKE_VIDEO_LIMITS", os.path.join(os.path.dirname(__file__), "limits.toml"))
TEMP = os.environ.get("MAKE_VIDEO_TEMP", "/tmp/makevideo")
QUEUE = os.environ.get("MAKE_VIDEO_CELERY_QUEUE", "celery")
SWEEP_EVERY = float(os.environ.get("MAKE_VIDEO_SWEEP_EVERY", 6 * 3600))
SWEEP_OLDER_THAN = float(os.environ.get("MAKE_VIDEO_SWEEP_OLDER_THAN", 24 * 3600))


def admission() -> RedisAdmission:
    """The limits every API process and every worker share (fail closed when Redis is away)."""
    return RedisAdmission.connect(
        REDIS_URL, NAME, Limits.from_file(LIMITS),
        lease=float(os.environ.get("MAKE_VIDEO_LEASE", "10")),
        deadline=float(os.environ.get("MAKE_VIDEO_DEADLINE", "0.05")),
    )
