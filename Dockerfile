# The official Airflow image of the pinned version, with this package and its locked dependencies.
# Build: docker build -t investment-jobs .
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root requirements.txt constraints.txt pyproject.toml /opt/investment-jobs/
COPY --chown=airflow:root include/ /opt/investment-jobs/include/
RUN pip install --no-cache-dir -r /opt/investment-jobs/requirements.txt -c /opt/investment-jobs/constraints.txt \
 && pip install --no-cache-dir --no-deps /opt/investment-jobs

COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
