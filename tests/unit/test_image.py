"""No Docker engine runs here, so the Dockerfile is held to the lock by reading it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def pinned(name: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{name} is not pinned in constraints.txt")


def test_the_base_image_is_the_locked_airflow_on_python_3_11() -> None:
    base = re.search(r"^FROM\s+(\S+)", DOCKERFILE, re.MULTILINE)
    assert base is not None
    assert base.group(1) == f"apache/airflow:{pinned('apache-airflow')}-python3.11"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"apache-airflow=={pinned('apache-airflow')}" in project["dependencies"]
    assert project["requires-python"].startswith(">=3.11")


def test_the_image_installs_the_lock_and_the_package() -> None:
    assert re.search(r"pip install .*-r \S*requirements\.txt -c \S*constraints\.txt", DOCKERFILE)
    assert re.search(r"pip install .*--no-deps /opt/investment-jobs\b", DOCKERFILE)


def test_the_image_copies_what_airflow_loads_from_paths_that_exist() -> None:
    copies = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)\s+(\S+)$", DOCKERFILE, re.MULTILINE)
    sources = {src for srcs, _ in copies for src in srcs.split()}
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repository"
    targets = {dest for _, dest in copies}
    assert {"/opt/airflow/dags/", "/opt/airflow/plugins/"} <= targets
    assert {"include/", "dags/", "plugins/", "constraints.txt", "requirements.txt", "pyproject.toml"} <= sources


def test_every_runtime_requirement_is_pinned() -> None:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name = re.split(r"[\[<>=;\s]", line.strip(), maxsplit=1)[0]
        if name and not name.startswith("#"):
            pinned(name.lower())


def test_the_image_holds_the_production_package_only() -> None:
    """The tooling package (stand-ins, embedded defaults, demo, stack launcher) never ships."""
    copies = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)\s+(\S+)$", DOCKERFILE, re.MULTILINE)
    sources = {src.rstrip("/") for srcs, _ in copies for src in srcs.split()}
    assert not {"dev", "tests", "bench", "."} & sources, sources
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert found["where"] == ["include"]
    packages = {p.name for p in (ROOT / "include").iterdir() if (p / "__init__.py").exists()}
    assert packages == {"investment_jobs"}
    runtime = (ROOT / "requirements.txt").read_text()
    assert "pgserver" not in runtime and "psutil" not in runtime and "./dev" not in runtime
