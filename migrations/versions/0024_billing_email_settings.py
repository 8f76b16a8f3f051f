"""billing emails: per-tenant choices, the causes already emailed, email attachments

Revision ID: 0024_billing_email_settings
Revises: 0023_coupons
Create Date: 2026-12-08 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0024_billing_email_settings'
down_revision = '0023_coupons'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('billing_email_settings',
    sa.Column('tenant_id', sa.String(length=50), nullable=False),
    sa.Column('invoice_issued', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('renewal_upcoming', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('trial_ending', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('cancellation_confirmed', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('plan_changed', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.tenant_id'], name=op.f('fk_billing_email_settings_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_billing_email_settings'))
    )
    op.create_table('billing_notices',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('tenant_id', sa.String(length=50), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.tenant_id'], name=op.f('fk_billing_notices_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_notices')),
    sa.UniqueConstraint('key', name=op.f('uq_billing_notices_key'))
    )
    with op.batch_alter_table('billing_notices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_notices_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('email_attachments',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('message_id', sa.String(length=32), nullable=False),
    sa.Column('filename', sa.String(length=200), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=True),
    sa.Column('source', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['email_messages.id'], name=op.f('fk_email_attachments_message_id_email_messages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_attachments'))
    )
    with op.batch_alter_table('email_attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_attachments_message_id'), ['message_id'], unique=False)


def downgrade():
    with op.batch_alter_table('email_attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_attachments_message_id'))
    op.drop_table('email_attachments')
    with op.batch_alter_table('billing_notices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_notices_tenant_id'))
    op.drop_table('billing_notices')
    op.drop_table('billing_email_settings')
