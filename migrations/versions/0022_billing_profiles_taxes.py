"""billing profiles, tax rates, taxes and discount on invoices

Revision ID: 0022_billing_profiles_taxes
Revises: 0021
Create Date: 2026-12-07 02:34:23.470907

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0022_billing_profiles_taxes'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade():
    
    op.create_table('tax_rates',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('percentage', sa.Numeric(precision=7, scale=4), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('region', sa.String(length=100), nullable=False),
    sa.Column('inclusive', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tax_rates')),
    sa.UniqueConstraint('key', name=op.f('uq_tax_rates_key'))
    )
    with op.batch_alter_table('tax_rates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tax_rates_country'), ['country'], unique=False)

    op.create_table('billing_profiles',
    sa.Column('tenant_id', sa.String(length=50), nullable=False),
    sa.Column('legal_name', sa.String(length=200), nullable=False),
    sa.Column('address_line1', sa.String(length=200), nullable=False),
    sa.Column('address_line2', sa.String(length=200), nullable=False),
    sa.Column('city', sa.String(length=100), nullable=False),
    sa.Column('postal_code', sa.String(length=20), nullable=False),
    sa.Column('region', sa.String(length=100), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('billing_email', sa.String(length=254), nullable=False),
    sa.Column('extra_recipients', sa.JSON(), nullable=False),
    sa.Column('tax_ids', sa.JSON(), nullable=False),
    sa.Column('po_number', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.tenant_id'], name=op.f('fk_billing_profiles_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', name=op.f('pk_billing_profiles'))
    )
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credit_allocated', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('tax_name', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('tax_percentage', sa.Numeric(precision=7, scale=4), nullable=True))
        batch_op.add_column(sa.Column('tax_inclusive', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('tax_amount', sa.Integer(), server_default='0', nullable=False))

    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('buyer', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('discount', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('tax', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('tax_note', sa.Text(), nullable=True))




def downgrade():
    
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_column('tax_note')
        batch_op.drop_column('tax')
        batch_op.drop_column('discount')
        batch_op.drop_column('buyer')

    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.drop_column('tax_amount')
        batch_op.drop_column('tax_inclusive')
        batch_op.drop_column('tax_percentage')
        batch_op.drop_column('tax_name')
        batch_op.drop_column('credit_allocated')

    op.drop_table('billing_profiles')
    with op.batch_alter_table('tax_rates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tax_rates_country'))

    op.drop_table('tax_rates')

