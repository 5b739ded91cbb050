"""investment-jobs: the scheduled money jobs of the investment-accounts platform.

Everything here is importable without Airflow running; the DAGs in ``dags/`` are thin wiring
around the step functions in :mod:`investment_jobs.jobs`.
"""
