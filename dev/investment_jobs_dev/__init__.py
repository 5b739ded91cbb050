"""investment-jobs' development tooling: never shipped in the image, installed by requirements-dev.txt.

The stand-ins of the ML engine and Stripe (``standins``), the embedded defaults behind ``make
job/migrate/demo/jobs-on/jobs-off`` (``cli``), the demo book (``book``), the Celery stack launcher
(``stack``), one way to start a stand-in (``standins.launcher``) and one Airflow environment for
this checkout (``airflow_env``). The production package (``investment_jobs``) never imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("INVESTMENT_JOBS_ROOT", Path(__file__).resolve().parents[2]))
LOCAL = ROOT / ".local"


def say(message: str) -> None:
    print(f"[investment-jobs] {message}", flush=True)
