"""usage events, meters, quota notices

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 16:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('meters',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('event_name', sa.String(length=128), nullable=False),
    sa.Column('aggregation', sa.String(length=20), nullable=False),
    sa.Column('property', sa.String(length=128), nullable=True),
    sa.Column('filter', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_meters')),
    sa.UniqueConstraint('key', name=op.f('uq_meters_key'))
    )
    op.create_table('usage_events',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('tenant_id', sa.String(length=50), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('occurred_at', sa.DateTime(), nullable=False),
    sa.Column('quantity', sa.Numeric(precision=20, scale=6), nullable=False),
    sa.Column('properties', sa.JSON(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('invoice_id', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_usage_events_invoice_id_invoices')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.tenant_id'], name=op.f('fk_usage_events_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_events')),
    sa.UniqueConstraint('tenant_id', 'idempotency_key', name=op.f('uq_usage_events_tenant_id'))
    )
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_usage_events_invoice_id'), ['invoice_id'], unique=False)
        batch_op.create_index('ix_usage_events_tenant_name_time', ['tenant_id', 'name', 'occurred_at'], unique=False)

    op.create_table('quota_notices',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('tenant_id', sa.String(length=50), nullable=False),
    sa.Column('feature_key', sa.String(length=64), nullable=False),
    sa.Column('period_start', sa.DateTime(), nullable=False),
    sa.Column('threshold', sa.Integer(), nullable=False),
    sa.Column('used', sa.Numeric(precision=20, scale=6), nullable=False),
    sa.Column('limit', sa.Numeric(precision=20, scale=6), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.tenant_id'], name=op.f('fk_quota_notices_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quota_notices')),
    sa.UniqueConstraint('tenant_id', 'feature_key', 'period_start', 'threshold',
                        name=op.f('uq_quota_notices_tenant_id'))
    )
    with op.batch_alter_table('quota_notices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quota_notices_tenant_id'), ['tenant_id'], unique=False)


def downgrade():
    with op.batch_alter_table('quota_notices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quota_notices_tenant_id'))
    op.drop_table('quota_notices')
    with op.batch_alter_table('usage_events', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_events_tenant_name_time')
        batch_op.drop_index(batch_op.f('ix_usage_events_invoice_id'))
    op.drop_table('usage_events')
    op.drop_table('meters')
