"""The app's models, one module per concern; import them from here."""

from .checkpoints import Checkpoint
from .coordination import JobChain, Lock
from .deploys import DeployRecord, DeployState
from .runs import Run, RunEvent, RunQuerySet
from .schedules import Schedule, SchedulerState, ScheduleSource
from .skipped import SkippedItem
from .tasks import Task, canonical_json

__all__ = [
    "Checkpoint",
    "DeployRecord",
    "DeployState",
    "JobChain",
    "Lock",
    "Run",
    "RunEvent",
    "RunQuerySet",
    "Schedule",
    "ScheduleSource",
    "SchedulerState",
    "SkippedItem",
    "Task",
    "canonical_json",
]
