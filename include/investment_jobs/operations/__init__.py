"""How the jobs run under Airflow: DAG settings, the run's context, its log lines, alerts, health."""
