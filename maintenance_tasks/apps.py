from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MaintenanceTasksConfig(AppConfig):
    name = "maintenance_tasks"
    verbose_name = _("Maintenance tasks")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 (registers the system checks)
