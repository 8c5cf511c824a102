"""The app's models, one module per concern; import them from here."""

from .deploys import DeployRecord, DeployState
from .runs import Lock, Run, RunEvent, RunQuerySet
from .schedules import Schedule, SchedulerState, ScheduleSource
from .tasks import Task, canonical_json

__all__ = [
    "DeployRecord",
    "DeployState",
    "Lock",
    "Run",
    "RunEvent",
    "RunQuerySet",
    "Schedule",
    "ScheduleSource",
    "SchedulerState",
    "Task",
    "canonical_json",
]
