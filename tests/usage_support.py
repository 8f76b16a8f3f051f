"""Helpers for the usage tests: record events through the ingestion service, as the API does."""

import itertools
from datetime import datetime
from decimal import Decimal

from portal.infra.transactions import commit
from portal.models import utcnow
from portal.usage import ingest

_keys = itertools.count()


def record(
    tenant_id: str,
    name: str,
    quantity=1,
    at: datetime | None = None,
    properties: dict | None = None,
    key: str | None = None,
    many: int = 1,
) -> list[str]:
    """Store ``many`` events (committed); returns their ids. Fails the test if any is refused."""
    quantity = Decimal(quantity) if isinstance(quantity, str) else quantity
    raw = [
        {
            "tenant_id": tenant_id,
            "eventName": name,
            "quantity": quantity,
            "occurredAt": (at or utcnow()).isoformat(),
            "properties": properties or {},
            "eventIdempotencyKey": key or f"test-{next(_keys)}",
        }
        for _ in range(many)
    ]
    outcomes = ingest.ingest(raw)
    assert all(o.status == "accepted" for o in outcomes), [o.reason for o in outcomes]
    commit()
    return [o.event_id for o in outcomes]
