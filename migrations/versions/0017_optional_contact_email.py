"""optional contact email: seed 000 onboards a tenant without one

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def _restore_case_insensitive_index():
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite's batch mode rebuilt the table without its expression index (from 0002).
        op.create_index('uq_tenants_lower_tenant_id', 'tenants', [sa.text('lower(tenant_id)')], unique=True)


def upgrade():
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.alter_column('contact_email', existing_type=sa.String(length=254), nullable=True)
    _restore_case_insensitive_index()


def downgrade():
    op.execute("UPDATE tenants SET contact_email = '' WHERE contact_email IS NULL")
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.alter_column('contact_email', existing_type=sa.String(length=254), nullable=False)
    _restore_case_insensitive_index()
