"""email messages: live links sealed outside the stored bodies

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 21:30:00.000000

Messages stored before this keep their bodies as they are: their links are redacted below so
no dump taken after the upgrade holds a usable invitation or reset link.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

LINK = r"https?://[^\s\"<>]*/(invite|reset-password|account/email/confirm)/[^\s\"<>]+"


def upgrade():
    with op.batch_alter_table('email_messages') as batch:
        batch.add_column(sa.Column('sealed_secrets', sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column('sealed_key_id', sa.String(length=16), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        for column in ('text_body', 'html_body'):
            op.execute(sa.text(
                f"UPDATE email_messages SET {column} = regexp_replace({column}, :pattern, "
                f"'[link removed after delivery]', 'g') WHERE {column} ~ :pattern"
            ).bindparams(pattern=LINK))
    else:
        import re
        rows = bind.execute(sa.text("SELECT id, text_body, html_body FROM email_messages")).all()
        for row in rows:
            text_body = re.sub(LINK, '[link removed after delivery]', row.text_body)
            html_body = re.sub(LINK, '[link removed after delivery]', row.html_body)
            if (text_body, html_body) != (row.text_body, row.html_body):
                bind.execute(sa.text("UPDATE email_messages SET text_body = :t, html_body = :h WHERE id = :i"),
                             {"t": text_body, "h": html_body, "i": row.id})


def downgrade():
    with op.batch_alter_table('email_messages') as batch:
        batch.drop_column('sealed_key_id')
        batch.drop_column('sealed_secrets')
