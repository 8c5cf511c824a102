from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MaintenanceTasksConfig(AppConfig):
    name = "maintenance_tasks"
    verbose_name = _("Maintenance tasks")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from . import checks  # noqa: F401 (registers the system checks)
        from .signal_handlers import sync_schedules_after_migrate

        post_migrate.connect(sync_schedules_after_migrate, sender=self, dispatch_uid="maintenance_tasks_schedules")
