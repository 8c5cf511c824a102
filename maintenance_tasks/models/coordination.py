"""Rows that processes coordinate through: Lock, to take turns, and JobChain, for self-renewing jobs."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils import timezone


class Lock(models.Model):
    """A named row that a transaction updates first to take turns with other processes.

    An UPDATE locks the row until commit on PostgreSQL and MySQL, and takes the write lock
    on SQLite, so a check made after it cannot race with the same check elsewhere.
    """

    name = models.CharField(primary_key=True, max_length=64)
    taken_at = models.DateTimeField(null=True)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return self.name

    @classmethod
    def take(cls, name: str) -> None:
        """Hold the lock ``name`` until the current transaction ends."""
        if not cls.objects.filter(name=name).update(taken_at=timezone.now()):
            cls.objects.get_or_create(name=name)
            cls.objects.filter(name=name).update(taken_at=timezone.now())


class JobChain(models.Model):
    """A chain of jobs, each enqueuing the next (the watchdog, the scheduler): at most one goes on.

    Each job carries the chain's token. A job first moves the token on (``advance``): a
    duplicate or superseded job finds it moved and stops. A chain whose next job is overdue
    is taken as dead, and a new one started under a new token.
    """

    name = models.CharField(primary_key=True, max_length=64)
    token = models.PositiveIntegerField(default=0)
    next_run_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        default_permissions = ()

    def __str__(self) -> str:
        return f"{self.name} chain (token {self.token})"

    @classmethod
    def restart(cls, name: str, now: datetime, grace: float) -> int | None:
        """Return a new token if the chain's next job is not due within ``grace`` seconds of ``now``, else None."""
        chain, _ = cls.objects.get_or_create(name=name)
        if chain.next_run_at is not None and (chain.next_run_at - now).total_seconds() > -grace:
            return None
        token = chain.token + 1
        if not cls.objects.filter(name=name, token=chain.token).update(token=token, next_run_at=now):
            return None  # another process restarted it just now
        return token

    @classmethod
    def advance(cls, name: str, token: int, next_run_at: datetime) -> bool:
        """Move the chain from ``token`` to ``token + 1``, next due at ``next_run_at``; return whether this job holds it."""
        return bool(cls.objects.filter(name=name, token=token).update(token=token + 1, next_run_at=next_run_at))

    @classmethod
    def reschedule(cls, name: str, token: int, next_run_at: datetime | None) -> bool:
        """Set when the chain's next job runs (None: the chain stops), if ``token`` holds it; return whether it does."""
        return bool(cls.objects.filter(name=name, token=token).update(next_run_at=next_run_at))
