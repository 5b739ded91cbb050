"""Running the DAGs of dags/ in-process (dag.test) and reading back what Airflow recorded."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from tests.support.paths import ROOT

_dags: dict = {}


# Settings a DAG's shape depends on (read as it is parsed): a test that sets one gets its own parse.
SHAPING = ("SHARDS",)


def load_dag(dag_id: str):  # noqa: ANN201
    """The DAG object parsed from its file in dags/ (once per session and shaping settings), as the
    scheduler would."""
    import os

    key = (dag_id, *(os.environ.get(name, "") for name in SHAPING))
    if key not in _dags:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py"))
        assert not bag.import_errors, bag.import_errors
        _dags[key] = bag.get_dag(dag_id)
    return _dags[key]


def run_dag(dag_id: str, day: date | datetime, conf: dict | None = None):  # noqa: ANN201
    """dag.test() for one business date (or an exact logical date); returns the DagRun."""
    dag = load_dag(dag_id)
    logical = day if isinstance(day, datetime) else datetime(day.year, day.month, day.day, tzinfo=UTC)
    return dag.test(logical_date=logical, run_conf=conf)


def task_states(dag_run) -> dict[str, str]:  # noqa: ANN001
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}


def xcom(dag_run, task_id: str) -> Any:  # noqa: ANN001
    """The return value a task pushed in this run."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(XComModel).where(XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id,
                                    XComModel.task_id == task_id, XComModel.key == "return_value")
        ).scalar_one_or_none()
        return None if row is None else XComModel.deserialize_value(row)
