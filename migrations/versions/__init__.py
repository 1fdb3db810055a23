"""Revisions, oldest first: `alembic revision -m ...` from the project root adds one."""
