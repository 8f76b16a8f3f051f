"""billing runs: a heartbeat, previews of a future "as of", and the run that issued each invoice

A run whose heartbeat stopped is shown as stalled and can be resumed; a resumed run counts what
it had billed from its invoices.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 23:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('billing_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('preview', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('preview_items', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(), nullable=True))

    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('billing_run_id', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_invoices_billing_run_id'), ['billing_run_id'], unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_invoices_billing_run_id_billing_runs'), 'billing_runs', ['billing_run_id'], ['id']
        )


def downgrade():
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_invoices_billing_run_id_billing_runs'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_invoices_billing_run_id'))
        batch_op.drop_column('billing_run_id')

    with op.batch_alter_table('billing_runs', schema=None) as batch_op:
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('preview_items')
        batch_op.drop_column('preview')
