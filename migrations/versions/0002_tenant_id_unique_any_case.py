"""tenant ids unique whatever their case

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:40:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('uq_tenants_lower_tenant_id', 'tenants', [sa.text('lower(tenant_id)')], unique=True)


def downgrade():
    op.drop_index('uq_tenants_lower_tenant_id', table_name='tenants')
