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
    # No JIT: the jobs' statements join staging tables whose row estimates are rough, and a rough
    # estimate past jit_above_cost made PostgreSQL spend 0.35 s compiling a statement that then ran
    # for 6 ms (the daily re-chain of later days, which is empty in a forward run).
    # work_mem: the jobs hash a date's rows (100k accounts: about 10 MB a hash), which the default
    # 4 MB spilled to disk in batches. Per hash or sort node of the one statement a job runs at a time.
    conn.execute("SET jit = off; SET work_mem = '64MB'")  # one round trip
    conn.commit()
    return conn


def connect_on_server(conn_id: str = INVESTMENT_DB_CONN_ID) -> psycopg.Connection:
    """The same database from the Airflow API server's side (a plugin's request handler), where the
    Task SDK's hooks are not available: the connection from Airflow's secrets (env, metadata DB)."""
    import psycopg
    from airflow.models.connection import Connection
    from psycopg.conninfo import make_conninfo

    conn = Connection.get_connection_from_secrets(conn_id)
    conninfo = make_conninfo(host=conn.host or None, port=conn.port or None, dbname=conn.schema or None,
                             user=conn.login or None, password=conn.password or None)
    return psycopg.connect(conninfo, connect_timeout=10)
