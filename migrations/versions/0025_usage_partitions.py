"""usage events partitioned by month (PostgreSQL), idempotency keys in a table of their own

On PostgreSQL ``usage_events`` becomes a table partitioned by range of ``occurred_at``: one
partition per calendar month (UTC) that holds events, plus the current and the next month,
plus a DEFAULT partition so that an event never fails to insert. A partitioned table's unique
indexes must include the partition key, so the primary key becomes ``(id, occurred_at)`` and
``(tenant_id, idempotency_key)`` moves to ``usage_event_keys`` (unique there, whatever the
timestamp). The rows are copied once: on a large table, run this in a maintenance window.

SQLite is not partitioned; it gets the same keys table and primary key, so both run one code.

Revision ID: 0025_usage_partitions
Revises: 0024_billing_email_settings
Create Date: 2026-12-08 10:00:00

"""
from datetime import UTC, datetime

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0025_usage_partitions'
down_revision = '0024_billing_email_settings'
branch_labels = None
depends_on = None

COLUMNS = "id, tenant_id, idempotency_key, name, occurred_at, quantity, properties, received_at, invoice_id"


def _month(year: int, month: int) -> datetime:
    return datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def _create_keys_table():
    op.create_table('usage_event_keys',
    sa.Column('tenant_id', sa.String(length=50), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('event_id', sa.String(length=32), nullable=False),
    sa.Column('occurred_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.tenant_id'], name=op.f('fk_usage_event_keys_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('tenant_id', 'idempotency_key', name=op.f('pk_usage_event_keys'))
    )
    op.execute(
        "INSERT INTO usage_event_keys (tenant_id, idempotency_key, event_id, occurred_at) "
        "SELECT tenant_id, idempotency_key, id, occurred_at FROM usage_events"
    )
    op.create_index('ix_usage_event_keys_occurred_at', 'usage_event_keys', ['occurred_at'], unique=False,
                    postgresql_using='brin')


def upgrade():
    _create_keys_table()
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table('usage_events', schema=None) as batch_op:
            batch_op.drop_constraint('uq_usage_events_tenant_id', type_='unique')
            batch_op.drop_constraint('pk_usage_events', type_='primary')
            batch_op.create_primary_key('pk_usage_events', ['id', 'occurred_at'])
        return

    op.execute("ALTER TABLE usage_events RENAME TO usage_events_unpartitioned")
    op.execute(
        "ALTER TABLE usage_events_unpartitioned DROP CONSTRAINT pk_usage_events, "
        "DROP CONSTRAINT uq_usage_events_tenant_id, "
        "DROP CONSTRAINT fk_usage_events_tenant_id_tenants, DROP CONSTRAINT fk_usage_events_invoice_id_invoices"
    )
    op.execute("DROP INDEX ix_usage_events_invoice_id")
    op.execute("DROP INDEX ix_usage_events_tenant_name_time")
    op.execute(
        """
        CREATE TABLE usage_events (
            id VARCHAR(32) NOT NULL,
            tenant_id VARCHAR(50) NOT NULL,
            idempotency_key VARCHAR(200) NOT NULL,
            name VARCHAR(128) NOT NULL,
            occurred_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
            quantity NUMERIC(20, 6) NOT NULL,
            properties JSON NOT NULL,
            received_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
            invoice_id VARCHAR(32),
            CONSTRAINT pk_usage_events PRIMARY KEY (id, occurred_at),
            CONSTRAINT fk_usage_events_tenant_id_tenants FOREIGN KEY (tenant_id) REFERENCES tenants (tenant_id),
            CONSTRAINT fk_usage_events_invoice_id_invoices FOREIGN KEY (invoice_id) REFERENCES invoices (id)
        ) PARTITION BY RANGE (occurred_at)
        """
    )
    op.execute("CREATE INDEX ix_usage_events_invoice_id ON usage_events (invoice_id)")
    op.execute("CREATE INDEX ix_usage_events_tenant_name_time ON usage_events (tenant_id, name, occurred_at)")

    now = datetime.now(UTC)
    months = {_month(now.year, now.month), _month(now.year, now.month + 1)}
    for (start,) in op.get_bind().exec_driver_sql(
        "SELECT DISTINCT date_trunc('month', occurred_at) FROM usage_events_unpartitioned"
    ):
        months.add(start)
    for start in sorted(months):
        end = _month(start.year, start.month + 1)
        op.execute(
            f"CREATE TABLE usage_events_y{start.year:04d}m{start.month:02d} PARTITION OF usage_events "
            f"FOR VALUES FROM ('{start.isoformat(' ')}') TO ('{end.isoformat(' ')}')"
        )
    op.execute("CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT")
    op.execute(f"INSERT INTO usage_events ({COLUMNS}) SELECT {COLUMNS} FROM usage_events_unpartitioned")
    op.execute("DROP TABLE usage_events_unpartitioned")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE usage_events RENAME TO usage_events_partitioned")
        op.execute(
            "ALTER TABLE usage_events_partitioned DROP CONSTRAINT pk_usage_events, "
            "DROP CONSTRAINT fk_usage_events_tenant_id_tenants, DROP CONSTRAINT fk_usage_events_invoice_id_invoices"
        )
        op.execute("DROP INDEX ix_usage_events_invoice_id")
        op.execute("DROP INDEX ix_usage_events_tenant_name_time")
        op.create_table('usage_events',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('tenant_id', sa.String(length=50), nullable=False),
        sa.Column('idempotency_key', sa.String(length=200), nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('occurred_at', sa.DateTime(), nullable=False),
        sa.Column('quantity', sa.Numeric(precision=20, scale=6), nullable=False),
        sa.Column('properties', sa.JSON(), nullable=False),
        sa.Column('received_at', sa.DateTime(), nullable=False),
        sa.Column('invoice_id', sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_usage_events_invoice_id_invoices')),
        sa.ForeignKeyConstraint(['tenant_id'], ['tenants.tenant_id'], name=op.f('fk_usage_events_tenant_id_tenants')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_events')),
        sa.UniqueConstraint('tenant_id', 'idempotency_key', name=op.f('uq_usage_events_tenant_id'))
        )
        op.execute(f"INSERT INTO usage_events ({COLUMNS}) SELECT {COLUMNS} FROM usage_events_partitioned")
        op.execute("DROP TABLE usage_events_partitioned")  # and its partitions
        op.create_index('ix_usage_events_invoice_id', 'usage_events', ['invoice_id'], unique=False)
        op.create_index('ix_usage_events_tenant_name_time', 'usage_events', ['tenant_id', 'name', 'occurred_at'],
                        unique=False)
    else:
        with op.batch_alter_table('usage_events', schema=None) as batch_op:
            batch_op.drop_constraint('pk_usage_events', type_='primary')
            batch_op.create_primary_key('pk_usage_events', ['id'])
            batch_op.create_unique_constraint('uq_usage_events_tenant_id', ['tenant_id', 'idempotency_key'])
    op.drop_index('ix_usage_event_keys_occurred_at', table_name='usage_event_keys', postgresql_using='brin')
    op.drop_table('usage_event_keys')
