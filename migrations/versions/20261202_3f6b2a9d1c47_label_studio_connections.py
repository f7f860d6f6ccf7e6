"""a label set's Label Studio connection, and the examples its tasks became

Revision ID: 3f6b2a9d1c47
Revises: 8e1d0c5b7a31
Create Date: 2026-12-02 12:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '3f6b2a9d1c47'
down_revision: str | Sequence[str] | None = '8e1d0c5b7a31'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'label_studio_connections',
        sa.Column('label_set_id', sa.String(length=32), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('project_id', sa.Integer(), nullable=False),
        sa.Column('sealed_token', sa.LargeBinary(), nullable=False),
        sa.Column('last_pull', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['label_set_id'], ['label_sets.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('label_set_id'),
    )
    op.create_table(
        'label_studio_tasks',
        sa.Column('label_set_id', sa.String(length=32), nullable=False),
        sa.Column('task_id', sa.Integer(), nullable=False),
        sa.Column('annotation_id', sa.Integer(), nullable=True),
        sa.Column('example_id', sa.Integer(), nullable=False),
        sa.Column('owns_example', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['example_id'], ['examples.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['label_set_id'], ['label_sets.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('label_set_id', 'task_id'),
    )
    with op.batch_alter_table('label_studio_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_label_studio_tasks_example_id'), ['example_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('label_studio_tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_label_studio_tasks_example_id'))
    op.drop_table('label_studio_tasks')
    op.drop_table('label_studio_connections')
