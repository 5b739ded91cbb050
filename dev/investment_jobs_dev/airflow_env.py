"""One Airflow environment for this checkout: the settings every Airflow started here shares.

make job, the demo, the Celery stack, the tests and the benchmark all run Airflow from this
virtualenv on this checkout's dags/ and plugins/; they differ only in their home, metadata database
and executor, which they pass in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from investment_jobs_dev import ROOT

AIRFLOW = str(Path(sys.executable).parent / "airflow")


def checkout_env(home: Path, base: Mapping[str, str] | None = None, **settings: str) -> dict[str, str]:
    """The environment of an Airflow of this checkout with its home at ``home``: ``base`` (default:
    this process's environment) with the checkout's folders, this virtualenv's ``airflow`` first on
    PATH (Airflow starts some of its parts by name) and ``settings`` (``AIRFLOW__…`` and the like)."""
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    if env.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    })
    env.update(settings)
    return env


def use_checkout_env(home: Path) -> Path:
    """Make this process an Airflow of this checkout (what is already set in the environment wins,
    so ``AIRFLOW_HOME`` and a deployment's own settings are kept). Returns the home in use."""
    home.mkdir(parents=True, exist_ok=True)
    wanted = checkout_env(Path(os.environ.get("AIRFLOW_HOME", home)))
    os.environ["PATH"] = wanted.pop("PATH")
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
    return Path(os.environ["AIRFLOW_HOME"])


def airflow(*args: str, env: Mapping[str, str] | None = None, check: bool = True, quiet: bool = False
            ) -> subprocess.CompletedProcess:
    """Run ``airflow ARGS`` of this virtualenv (``quiet``: its output is captured, not shown)."""
    result = subprocess.run([AIRFLOW, *args], env=None if env is None else dict(env), text=True,
                            capture_output=quiet)
    if check and result.returncode:
        raise SystemExit(f"`airflow {' '.join(args)}` failed with exit status {result.returncode}")
    return result


def settings_pools(settings: Path = ROOT / "airflow_settings.yaml") -> list[tuple[str, str, str]]:
    """(name, slots, description) of the pools in airflow_settings.yaml (the Astro CLI's file)."""
    import yaml

    pools = (yaml.safe_load(settings.read_text()).get("airflow") or {}).get("pools") or []
    return [(p["pool_name"], str(p["pool_slot"]), p.get("pool_description", "")) for p in pools]


def load_pools(env: Mapping[str, str] | None = None) -> list[str]:
    """The settings' pools in this Airflow, so it runs as deployed."""
    for pool in settings_pools():
        airflow("pools", "set", *pool, env=env, quiet=True)
    return [name for name, _, _ in settings_pools()]
