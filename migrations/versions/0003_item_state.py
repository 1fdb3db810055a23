"""item state: a kind per item, its versioned state, and recent state changes

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(32), server_default="document", nullable=False)
        )
    op.create_table(
        "item_states",
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_item_states_item_id_items"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_item_states")),
    )
    op.create_table(
        "state_changes",
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sender", sa.String(64), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["items.id"],
            name=op.f("fk_state_changes_item_id_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("item_id", "version", name=op.f("pk_state_changes")),
    )
    # Items created before states existed are documents, with the empty one at version 0.
    op.execute("INSERT INTO item_states (item_id, version, state) SELECT id, 0, '{}' FROM items")


def downgrade() -> None:
    op.drop_table("state_changes")
    op.drop_table("item_states")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("kind")
