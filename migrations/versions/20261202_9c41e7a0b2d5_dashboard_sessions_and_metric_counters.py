"""dashboard sessions stored server-side; the counters /metrics reads, counted from the jobs so far

Revision ID: 9c41e7a0b2d5
Revises: 3f6b2a9d1c47
Create Date: 2026-12-02 15:00:00.000000

"""
import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '9c41e7a0b2d5'
down_revision: str | Sequence[str] | None = '3f6b2a9d1c47'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# store.metric_counters as of this revision (a migration keeps the names it was written with).
TRAIN_SECONDS_BUCKETS = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0, math.inf)


def upgrade() -> None:
    op.create_table(
        'dashboard_sessions',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('api_key_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('token_hash'),
    )
    with op.batch_alter_table('dashboard_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dashboard_sessions_api_key_id'), ['api_key_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dashboard_sessions_expires_at'), ['expires_at'], unique=False)
    counters = op.create_table(
        'metric_counters',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('label', sa.String(length=64), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('name', 'label'),
    )
    op.bulk_insert(counters, counts_so_far())


def counts_so_far() -> list[dict]:
    """The counters as the jobs already stored make them (read once, here, so that an upgraded
    deployment's /metrics goes on from where its numbers were)."""
    jobs = sa.table('jobs', sa.column('type', sa.String()), sa.column('status', sa.String()),
                    sa.column('done', sa.Integer()), sa.column('failed', sa.Integer()),
                    sa.column('started_at', sa.DateTime(timezone=True)),
                    sa.column('finished_at', sa.DateTime(timezone=True)))
    bind = op.get_bind()
    rows = [{'name': 'jobs', 'label': f'{job_type}:{status}', 'value': float(n)} for job_type, status, n in
            bind.execute(sa.select(jobs.c.type, jobs.c.status, sa.func.count()).group_by(jobs.c.type, jobs.c.status))]
    done, failed = bind.execute(sa.select(sa.func.coalesce(sa.func.sum(jobs.c.done), 0),
                                          sa.func.coalesce(sa.func.sum(jobs.c.failed), 0))
                                .where(jobs.c.type == 'tag')).one()
    rows += [{'name': 'items_tagged', 'label': 'ok', 'value': float(done)},
             {'name': 'items_tagged', 'label': 'failed', 'value': float(failed)}]
    buckets: Counter[str] = Counter()
    total = 0.0
    for started, finished in bind.execute(sa.select(jobs.c.started_at, jobs.c.finished_at).where(
            jobs.c.type == 'train', jobs.c.status == 'succeeded')):
        if started is None or finished is None:
            continue
        seconds = max(0.0, (utc(finished) - utc(started)).total_seconds())
        bound = next(b for b in TRAIN_SECONDS_BUCKETS if seconds <= b)
        buckets['+Inf' if math.isinf(bound) else repr(bound)] += 1
        total += seconds
    rows += [{'name': 'train_seconds_bucket', 'label': label, 'value': float(n)} for label, n in buckets.items()]
    rows.append({'name': 'train_seconds_sum', 'label': '', 'value': total})
    return rows


def utc(moment):
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def downgrade() -> None:
    op.drop_table('metric_counters')
    with op.batch_alter_table('dashboard_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dashboard_sessions_expires_at'))
        batch_op.drop_index(batch_op.f('ix_dashboard_sessions_api_key_id'))
    op.drop_table('dashboard_sessions')
