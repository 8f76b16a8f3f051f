"""hourly usage roll-ups, filled from the events already stored

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 16:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('usage_rollups',
    sa.Column('tenant_id', sa.String(length=50), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('hour', sa.DateTime(), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('total', sa.Numeric(precision=32, scale=6), nullable=False),
    sa.Column('max', sa.Numeric(precision=20, scale=6), nullable=False),
    sa.Column('min', sa.Numeric(precision=20, scale=6), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.tenant_id'], name=op.f('fk_usage_rollups_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'name', 'hour', name=op.f('pk_usage_rollups'))
    )
    # Events stored before this migration: summed up once, here.
    bind = op.get_bind()
    hour = ("date_trunc('hour', occurred_at)" if bind.dialect.name == "postgresql"
            else "strftime('%Y-%m-%d %H:00:00.000000', occurred_at)")
    op.execute(
        "INSERT INTO usage_rollups (tenant_id, name, hour, count, total, max, min) "
        f"SELECT tenant_id, name, {hour}, count(*), sum(quantity), max(quantity), min(quantity) "
        f"FROM usage_events GROUP BY tenant_id, name, {hour}"
    )


def downgrade():
    op.drop_table('usage_rollups')
