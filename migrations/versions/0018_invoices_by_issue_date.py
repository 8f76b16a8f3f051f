"""invoices: an index in issue order, for the operator's account-wide list a page at a time

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_invoices_issued_at_number', 'invoices', ['issued_at', 'number'], unique=False)


def downgrade():
    op.drop_index('ix_invoices_issued_at_number', table_name='invoices')
