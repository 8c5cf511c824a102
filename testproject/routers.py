"""The router of the "legacy" database (settings: LEGACY_DATABASE_URL): its models, and this app's checkpoints."""

from typing import Any

from django.db import models

#: The models whose rows live on the legacy database, by ``app_label.model_name``.
LEGACY_MODELS = {"demo.legacyarticle", "testapp.legacyitem"}


class LegacyRouter:
    """Read and write the legacy models on "legacy"; migrate them there, with maintenance_tasks' Checkpoint."""

    def db_for_read(self, model: type[models.Model], **hints: Any) -> str | None:
        return "legacy" if model._meta.label_lower in LEGACY_MODELS else None

    db_for_write = db_for_read

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        label = f"{app_label}.{model_name}"
        if db == "legacy":
            # django-tasks-db's migration 0019 (RenameIndexIfExists) reads its table on every database,
            # whatever the router says: its tables are created there too.
            return (
                label in LEGACY_MODELS
                or label == "maintenance_tasks.checkpoint"
                or app_label == "django_tasks_database"
            )
        return False if label in LEGACY_MODELS else None
