"""Where the tests run: the checkout, this interpreter, this xdist worker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
AIRFLOW_HOME = ROOT / ".local" / "test-airflow" / WORKER
STRIPE_TEST_KEY = "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc"
