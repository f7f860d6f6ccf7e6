"""train jobs wait for the running one (train requests coalesce)

Revision ID: 8e1d0c5b7a31
Revises: c149782c979a
Create Date: 2026-12-02 11:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '8e1d0c5b7a31'
down_revision: str | Sequence[str] | None = 'c149782c979a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queued_after', sa.String(length=32), nullable=True))
        batch_op.create_foreign_key('fk_jobs_queued_after', 'jobs', ['queued_after'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint('fk_jobs_queued_after', type_='foreignkey')
        batch_op.drop_column('queued_after')
