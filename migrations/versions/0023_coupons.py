"""coupons, promotion codes and the discounts subscriptions carry (invoices.discount, what the
discount line took off, comes with 0022)

Revision ID: 0023_coupons
Revises: 0022_billing_profiles_taxes
Create Date: 2026-12-07 02:33:55

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0023_coupons'
down_revision = '0022_billing_profiles_taxes'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('coupons',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('percent_off', sa.Numeric(precision=5, scale=2), nullable=True),
    sa.Column('amount_off', sa.Integer(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('duration', sa.String(length=10), nullable=False),
    sa.Column('duration_periods', sa.Integer(), nullable=True),
    sa.Column('plan_keys', sa.JSON(), nullable=False),
    sa.Column('redeem_by', sa.DateTime(), nullable=True),
    sa.Column('max_redemptions', sa.Integer(), nullable=True),
    sa.Column('times_redeemed', sa.Integer(), server_default='0', nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=254), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('deactivated_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint('(percent_off IS NULL) <> (amount_off IS NULL)', name=op.f('ck_coupons_percent_or_amount')),
    sa.CheckConstraint('times_redeemed >= 0', name=op.f('ck_coupons_times_redeemed_not_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupons'))
    )
    op.create_table('promotion_codes',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('coupon_id', sa.String(length=32), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('max_redemptions', sa.Integer(), nullable=True),
    sa.Column('times_redeemed', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_by', sa.String(length=254), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('deactivated_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint('times_redeemed >= 0', name=op.f('ck_promotion_codes_times_redeemed_not_negative')),
    sa.ForeignKeyConstraint(['coupon_id'], ['coupons.id'], name=op.f('fk_promotion_codes_coupon_id_coupons')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_promotion_codes')),
    sa.UniqueConstraint('code', name=op.f('uq_promotion_codes_code'))
    )
    with op.batch_alter_table('promotion_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_promotion_codes_coupon_id'), ['coupon_id'], unique=False)

    op.create_table('discounts',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('tenant_id', sa.String(length=50), nullable=False),
    sa.Column('subscription_id', sa.String(length=32), nullable=False),
    sa.Column('active_subscription_id', sa.String(length=32), nullable=True),
    sa.Column('coupon_id', sa.String(length=32), nullable=False),
    sa.Column('promotion_code_id', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('periods_remaining', sa.Integer(), nullable=True),
    sa.Column('ends_at', sa.DateTime(), nullable=True),
    sa.Column('invoices_discounted', sa.Integer(), server_default='0', nullable=False),
    sa.Column('amount_discounted', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('redeemed_by', sa.String(length=254), nullable=False),
    sa.Column('redeemed_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['coupon_id'], ['coupons.id'], name=op.f('fk_discounts_coupon_id_coupons')),
    sa.ForeignKeyConstraint(['promotion_code_id'], ['promotion_codes.id'], name=op.f('fk_discounts_promotion_code_id_promotion_codes')),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_discounts_subscription_id_subscriptions')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.tenant_id'], name=op.f('fk_discounts_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_discounts')),
    sa.UniqueConstraint('active_subscription_id', name=op.f('uq_discounts_active_subscription_id'))
    )
    with op.batch_alter_table('discounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_discounts_coupon_id'), ['coupon_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_discounts_promotion_code_id'), ['promotion_code_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_discounts_subscription_id'), ['subscription_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_discounts_tenant_id'), ['tenant_id'], unique=False)




def downgrade():
    with op.batch_alter_table('discounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_discounts_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_discounts_subscription_id'))
        batch_op.drop_index(batch_op.f('ix_discounts_promotion_code_id'))
        batch_op.drop_index(batch_op.f('ix_discounts_coupon_id'))

    op.drop_table('discounts')
    with op.batch_alter_table('promotion_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_promotion_codes_coupon_id'))

    op.drop_table('promotion_codes')
    op.drop_table('coupons')
