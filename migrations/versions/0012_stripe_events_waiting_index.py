"""stripe events: a partial index of the events waiting for the drain

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 17:35:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

WAITING = sa.text("status IN ('received', 'failed')")


def upgrade():
    op.create_index('ix_stripe_events_waiting', 'stripe_events', ['received_at', 'id'], unique=False,
                    postgresql_where=WAITING, sqlite_where=WAITING)


def downgrade():
    op.drop_index('ix_stripe_events_waiting', table_name='stripe_events')
