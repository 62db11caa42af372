"""Webhook deliveries already accepted: the replay guard of the post-deploy webhook.

A delivery is known by one or two keys: ``signature:<hex>`` always (the signature covers the timestamp and
the body, so it names one request), and ``delivery:<X-Prewarm-Delivery>`` when the sender gives an id. Keys
are claimed with ``INSERT ... ON CONFLICT DO NOTHING`` in the transaction that registers the version, so of
any number of identical deliveries racing, in one process or many, exactly one claims them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from db.models import WebhookDelivery
from db.registry import insert_ignoring_conflicts

REMEMBER_FOR = timedelta(hours=24)


def forget_expired(session: Session, *, now: datetime, keys: Sequence[str] | None = None) -> int:
    """Delete deliveries older than :data:`REMEMBER_FOR` (only ``keys`` when given): an id may then be reused."""
    query = delete(WebhookDelivery).where(WebhookDelivery.received_at < now - REMEMBER_FOR)
    if keys is not None:
        query = query.where(WebhookDelivery.key.in_(keys))
    return int(session.execute(query).rowcount or 0)


def claim(session: Session, keys: Sequence[str], *, model: str, version: str, now: datetime) -> str | None:
    """Record ``keys`` for a new delivery; returns None when all were new, else the first key already taken.

    Keys are claimed in the order given (the signature key first), so two claimers never wait on each other
    in a cycle. When a key is taken the caller must roll back: the keys claimed before it are not released.
    """
    for key in keys:
        values = {"key": key, "model": model, "version": version, "event_id": None, "received_at": now}
        if not insert_ignoring_conflicts(session, WebhookDelivery, values, key=["key"]):
            return key
    return None


def find(session: Session, key: str) -> WebhookDelivery | None:
    """The delivery recorded under ``key``, read afresh."""
    query = select(WebhookDelivery).where(WebhookDelivery.key == key).execution_options(populate_existing=True)
    return session.scalars(query).first()


def record_event(session: Session, keys: Sequence[str], event_id: str) -> None:
    """Remember the event a delivery emitted, so that its replays answer with the same id."""
    session.execute(update(WebhookDelivery).where(WebhookDelivery.key.in_(keys)).values(event_id=event_id))


def release(session: Session, keys: Sequence[str]) -> None:
    """Forget a delivery whose event could not be emitted, so that the sender's retry is accepted."""
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.key.in_(keys)))
