"""Deductions racing for one tenant's credit on real PostgreSQL row locks: exactly as many
succeed as the balance allows, the rest are refused, and the balance never goes below zero."""

import threading

from sqlalchemy import select

from portal.access import SYSTEM
from portal.billing import credits
from portal.extensions import db
from portal.infra.transactions import commit, rollback
from portal.models import CreditEntry, Tenant
from tests.conftest import unique


def test_racing_deductions_never_take_more_than_the_balance(committed_app):
    with committed_app.test_request_context():
        tenant_id = unique("t")
        tenant = Tenant(tenant_id=tenant_id, company_name="Race Co", contact_email="race@example.com")
        db.session.add(tenant)
        credits.grant(SYSTEM, tenant, 1000)
        commit()

    barrier, outcomes = threading.Barrier(8), []

    def deduct():
        with committed_app.test_request_context():
            barrier.wait()
            try:
                credits.deduct(SYSTEM, db.session.get(Tenant, tenant_id), 300, reason="race")
                commit()
                outcomes.append("ok")
            except credits.InsufficientCredit:
                rollback()
                outcomes.append("refused")
            except BaseException as error:  # noqa: BLE001 - reported by the assertion below
                rollback()
                outcomes.append(repr(error))

    threads = [threading.Thread(target=deduct) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["ok"] * 3 + ["refused"] * 5

    with committed_app.test_request_context():
        assert credits.summary(tenant_id).balance == 100
        balances = (
            db.session.execute(
                select(CreditEntry.balance_after)
                .where(CreditEntry.tenant_id == tenant_id)
                .order_by(CreditEntry.created_at)
            )
            .scalars()
            .all()
        )
        assert balances == [1000, 700, 400, 100]
