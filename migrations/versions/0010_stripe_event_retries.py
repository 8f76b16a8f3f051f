"""stripe events: failures in a row and the next retry, kept by the drain job

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 16:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failures_in_row', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('failures_in_row')
