"""the labeling loop's jobs: suggest and audit answers (job_outputs), and each example's history

Revision ID: b7d3e1f05a92
Revises: e4a7c2d9b6f1
Create Date: 2026-12-02 18:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = 'b7d3e1f05a92'
down_revision: str | Sequence[str] | None = 'e4a7c2d9b6f1'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'job_outputs',
        sa.Column('job_id', sa.String(length=32), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('body', sa.JSON(), nullable=False),
        sa.Column('example_id', sa.Integer(), nullable=True),
        sa.Column('decision', sa.String(length=16), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('decided_by', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['decided_by'], ['api_keys.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('job_id', 'position'),
    )
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.add_column(sa.Column('history', sa.JSON(), nullable=True))
    op.execute(sa.text("UPDATE examples SET history = '[]'"))
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.alter_column('history', existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.drop_column('history')
    op.drop_table('job_outputs')
