"""The admin: an index of every processor, a page per processor with a start form, run pages with controls.

Pages read; every change goes through ``runner.Runner``. State-changing views are POST only,
check the action's permission (403 otherwise), and end with an admin message, a ``LogEntry``
and a redirect. The ModelAdmins work on any ``AdminSite``: register them on your own site as here.
"""

from django.contrib import admin

from maintenance_tasks.models import Run, Schedule, Task

from .processors import TaskAdmin
from .runs import ProcessorFilter, RunAdmin
from .schedules import ScheduleAdmin

__all__ = ["ProcessorFilter", "RunAdmin", "ScheduleAdmin", "TaskAdmin"]

admin.site.register(Task, TaskAdmin)
admin.site.register(Run, RunAdmin)
admin.site.register(Schedule, ScheduleAdmin)
