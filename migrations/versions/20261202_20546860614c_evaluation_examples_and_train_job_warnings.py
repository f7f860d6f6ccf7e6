"""evaluation examples and train job warnings

Revision ID: 20546860614c
Revises: 5ad22327eecf
Create Date: 2026-12-02 08:04:07.853276

"""
import hashlib
from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '20546860614c'
down_revision: str | Sequence[str] | None = '5ad22327eecf'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The rule of store.label_sets.evaluation_marks as it was written here (a migration keeps its own copy).
EVAL_SHARE = 0.15
MIN_TRAINING_PER_LABEL = 4


def upgrade() -> None:
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.add_column(sa.Column('evaluation', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('warnings', sa.JSON(), nullable=False, server_default='[]'))

    # Existing examples get their evaluation mark as new ones will: in the order they were added.
    connection = op.get_bind()
    examples = sa.table('examples', sa.column('id', sa.Integer), sa.column('label_set_id', sa.String),
                        sa.column('text_hash', sa.String), sa.column('labels', sa.JSON),
                        sa.column('evaluation', sa.Boolean))
    trained: dict[str, Counter[str]] = {}
    marked = []
    for row in connection.execute(sa.select(examples.c.id, examples.c.label_set_id, examples.c.text_hash,
                                            examples.c.labels).order_by(examples.c.id)):
        counts = trained.setdefault(row.label_set_id, Counter())
        draw = int(hashlib.sha256(f"{row.label_set_id}:{row.text_hash}".encode()).hexdigest()[:8], 16) / 2**32
        if draw < EVAL_SHARE and all(counts[name] >= MIN_TRAINING_PER_LABEL for name in row.labels):
            marked.append(row.id)
        else:
            counts.update(row.labels)
    for start in range(0, len(marked), 500):
        connection.execute(examples.update().where(examples.c.id.in_(marked[start:start + 500]))
                           .values(evaluation=True))

    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.alter_column('evaluation', server_default=None)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('warnings', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('warnings')
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.drop_column('evaluation')
