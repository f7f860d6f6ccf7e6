"""length-grouped chunks

Revision ID: 5ad22327eecf
Revises: 72b0237467e2
Create Date: 2026-11-29 08:26:49.322469

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '5ad22327eecf'
down_revision: str | Sequence[str] | None = '72b0237467e2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing jobs keep their position-range chunks: each item is given the chunk whose
    # [start, end) holds it, each chunk its size, before the range columns go.
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('size', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('job_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chunk', sa.Integer(), nullable=False, server_default='0'))
    op.execute('UPDATE chunks SET size = "end" - start')
    op.execute(
        'UPDATE job_items SET chunk = (SELECT c."index" FROM chunks c WHERE c.job_id = job_items.job_id '
        'AND job_items.position >= c.start AND job_items.position < c."end")'
    )
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.alter_column('size', server_default=None)
        batch_op.drop_column('start')
        batch_op.drop_column('end')
    with op.batch_alter_table('job_items', schema=None) as batch_op:
        batch_op.alter_column('chunk', server_default=None)
        batch_op.create_index('ix_job_items_chunk', ['job_id', 'chunk'], unique=False)


def downgrade() -> None:
    # Length-grouped chunks have no position range; a downgrade keeps each chunk's first and
    # last position as its range, which is exact for jobs made before this revision.
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('start', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('end', sa.Integer(), nullable=False, server_default='0'))
    op.execute(
        'UPDATE chunks SET start = (SELECT MIN(position) FROM job_items i WHERE i.job_id = chunks.job_id '
        'AND i.chunk = chunks."index"), "end" = 1 + (SELECT MAX(position) FROM job_items i '
        'WHERE i.job_id = chunks.job_id AND i.chunk = chunks."index")'
    )
    with op.batch_alter_table('job_items', schema=None) as batch_op:
        batch_op.drop_index('ix_job_items_chunk')
        batch_op.drop_column('chunk')
    with op.batch_alter_table('chunks', schema=None) as batch_op:
        batch_op.drop_column('size')
