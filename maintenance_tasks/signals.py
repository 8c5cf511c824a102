"""Signals sent by maintenance_tasks."""

from django.dispatch import Signal

#: Sent once per run, by the scheduler, when a run has been active for longer than its
#: processor's ``expected_duration`` (or the OVERDUE_AFTER setting). Arguments: ``run``
#: and ``active_for`` (a timedelta). Sender: the Run class.
run_overdue = Signal()

#: Internal: sent by the watchdog job after it recovered stale runs, so that the layer that
#: owns the scheduler (connected in ``AppConfig.ready()``) restarts its job chain if it died.
watchdog_ran = Signal()
