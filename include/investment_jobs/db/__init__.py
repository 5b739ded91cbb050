"""Database access: connections, staging tables and migrations for schema ``investment``."""
