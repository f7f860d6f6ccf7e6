"""calibration, review and retraining on its own: auto-accept precision, result confidence, reviews
with provenance, retrain_after and when each example last changed

Revision ID: e4a7c2d9b6f1
Revises: 9c41e7a0b2d5
Create Date: 2026-12-02 15:00:00.000000

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = 'e4a7c2d9b6f1'
down_revision: str | Sequence[str] | None = '9c41e7a0b2d5'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('label_sets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('review_precision', sa.Float(), nullable=True))
        # Existing sets retrain on their own too, as new ones do (50 changed examples).
        batch_op.add_column(sa.Column('retrain_after', sa.Integer(), nullable=True, server_default='50'))
    with op.batch_alter_table('label_sets', schema=None) as batch_op:
        batch_op.alter_column('retrain_after', server_default=None)
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('review_precision', sa.Float(), nullable=True))
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_job_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('source_item_id', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key('fk_examples_source_job_id_jobs', 'jobs', ['source_job_id'], ['id'],
                                    ondelete='SET NULL')
    op.execute(sa.text("UPDATE examples SET updated_at = created_at"))
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.alter_column('updated_at', nullable=False)
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confidence', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('margin', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('reviewed_labels', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reviewed_by', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_results_reviewed_by_api_keys', 'api_keys', ['reviewed_by'], ['id'],
                                    ondelete='SET NULL')
        batch_op.create_index('ix_results_review', ['job_id', 'needs_review', 'confidence'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_index('ix_results_review')
        batch_op.drop_constraint('fk_results_reviewed_by_api_keys', type_='foreignkey')
        batch_op.drop_column('reviewed_by')
        batch_op.drop_column('reviewed_at')
        batch_op.drop_column('reviewed_labels')
        batch_op.drop_column('margin')
        batch_op.drop_column('confidence')
    with op.batch_alter_table('examples', schema=None) as batch_op:
        batch_op.drop_constraint('fk_examples_source_job_id_jobs', type_='foreignkey')
        batch_op.drop_column('updated_at')
        batch_op.drop_column('source_item_id')
        batch_op.drop_column('source_job_id')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('review_precision')
    with op.batch_alter_table('label_sets', schema=None) as batch_op:
        batch_op.drop_column('retrain_after')
        batch_op.drop_column('review_precision')
