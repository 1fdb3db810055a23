"""Alembic migrations of the service (installed as `api.migrations`)."""
