"""base model per label set

Revision ID: c149782c979a
Revises: 20546860614c
Create Date: 2026-12-02 09:40:00.000000

"""
import os
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = 'c149782c979a'
down_revision: str | Sequence[str] | None = '20546860614c'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('label_sets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('base_model', sa.String(length=200), nullable=False, server_default='auto'))
        batch_op.add_column(sa.Column('base_model_resolved', sa.String(length=200), nullable=True))
    # Sets that already have adapters were trained on the one base there was (BASE_MODEL, else
    # MiniLM): keep it, by the name workers know it by.
    configured = os.environ.get("BASE_MODEL") or "all-MiniLM-L6-v2"
    name = configured if "/" not in configured else Path(configured).name
    op.execute(sa.text("UPDATE label_sets SET base_model_resolved = :name "
                       "WHERE id IN (SELECT label_set_id FROM adapters)").bindparams(name=name))
    with op.batch_alter_table('label_sets', schema=None) as batch_op:
        batch_op.alter_column('base_model', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('label_sets', schema=None) as batch_op:
        batch_op.drop_column('base_model_resolved')
        batch_op.drop_column('base_model')
