"""psycopg 3 connections to the investment database, from the Airflow connection ``investment_db``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from investment_jobs.config import INVESTMENT_DB_CONN_ID

if TYPE_CHECKING:
    import psycopg


def connect(conn_id: str = INVESTMENT_DB_CONN_ID) -> psycopg.Connection:
    """A new psycopg 3 connection through PostgresHook (env ``AIRFLOW_CONN_*`` or the metadata DB)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = PostgresHook(postgres_conn_id=conn_id).get_conn()
    conn.autocommit = False
    return conn
