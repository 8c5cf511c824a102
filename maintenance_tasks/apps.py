from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MaintenanceTasksConfig(AppConfig):
    name = "maintenance_tasks"
    verbose_name = _("Maintenance tasks")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks and connect the receivers, once every app is loaded."""
        # Imported here, not at the top: they import models, which Django loads only after apps.
        from django.db.models.signals import post_delete, post_migrate

        from . import checks  # noqa: F401 (registers the system checks)
        from .csvfiles import delete_csv_file
        from .models import Run
        from .scheduling import on_watchdog_ran, sync_schedules_after_migrate
        from .signals import watchdog_ran

        post_migrate.connect(sync_schedules_after_migrate, sender=self, dispatch_uid="maintenance_tasks_schedules")
        watchdog_ran.connect(on_watchdog_ran, dispatch_uid="maintenance_tasks_scheduler_chain")
        post_delete.connect(delete_csv_file, sender=Run, dispatch_uid="maintenance_tasks_csv_files")
