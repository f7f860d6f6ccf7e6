"""span label sets: a label set's kind and span review threshold, spans on examples and results

Revision ID: d5f8a1c3e6b2
Revises: b7d3e1f05a92
Create Date: 2026-12-02 21:30:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = 'd5f8a1c3e6b2'
down_revision: str | Sequence[str] | None = 'b7d3e1f05a92'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('label_sets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False,
                                      server_default='classification'))
        batch_op.add_column(sa.Column('span_review_threshold', sa.Float(), nullable=False, server_default='0.5'))
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.add_column(sa.Column('spans', sa.JSON(), nullable=True))
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('spans', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_column('spans')
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.drop_column('spans')
    with op.batch_alter_table('label_sets', schema=None) as batch_op:
        batch_op.drop_column('span_review_threshold')
        batch_op.drop_column('kind')
