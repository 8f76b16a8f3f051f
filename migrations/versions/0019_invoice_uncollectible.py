"""invoices: when and why the operator marked one uncollectible

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('invoices') as batch:
        batch.add_column(sa.Column('uncollectible_at', sa.DateTime(), nullable=True))
        batch.add_column(sa.Column('uncollectible_reason', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('invoices') as batch:
        batch.drop_column('uncollectible_reason')
        batch.drop_column('uncollectible_at')
