"""A second admin site mounted beside the default one, registering the same ModelAdmins."""

from django.contrib import admin
from django.contrib.admin import AdminSite
from django.urls import path

from maintenance_tasks.admin import RunAdmin, ScheduleAdmin, TaskAdmin
from maintenance_tasks.models import Run, Schedule, Task

ops_site = AdminSite(name="ops_admin")
ops_site.register(Task, TaskAdmin)
ops_site.register(Run, RunAdmin)
ops_site.register(Schedule, ScheduleAdmin)

urlpatterns = [path("admin/", admin.site.urls), path("ops/", ops_site.urls)]
