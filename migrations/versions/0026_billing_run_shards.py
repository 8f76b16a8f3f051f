"""billing run shards: a run is cut into slices that jobs on the queue bill on any worker

Revision ID: 0026_billing_run_shards
Revises: 0025_usage_partitions
Create Date: 2026-12-08 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0026_billing_run_shards'
down_revision = '0025_usage_partitions'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('billing_run_shards',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('subscription_ids', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('worker', sa.String(length=255), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['billing_runs.id'], name=op.f('fk_billing_run_shards_run_id_billing_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_run_shards')),
    sa.UniqueConstraint('run_id', 'position', name=op.f('uq_billing_run_shards_run_id'))
    )
    with op.batch_alter_table('billing_run_shards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_run_shards_run_id'), ['run_id'], unique=False)


def downgrade():
    with op.batch_alter_table('billing_run_shards', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_run_shards_run_id'))
    op.drop_table('billing_run_shards')
