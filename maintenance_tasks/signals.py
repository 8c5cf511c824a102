"""Signals sent by maintenance_tasks."""

from django.dispatch import Signal

#: Sent once per run, by the scheduler, when a run has been active for longer than its
#: processor's ``expected_duration`` (or the STUCK_RUN_AFTER setting). Arguments: ``run``
#: and ``active_for`` (a timedelta). Sender: the Run class.
run_stuck = Signal()
