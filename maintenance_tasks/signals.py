"""Signals sent by maintenance_tasks."""

from django.dispatch import Signal

# -- a run's life: sent once the change of status commits, in the process that made it ---------
# Sender: the Run class. Arguments: ``run`` (the Run as the change left it), and ``error`` for
# ``run_errored``. A receiver that raises is logged, with its traceback; the run is left as it is.

#: A run was created (started from Python, the admin, the command line, a schedule, a deploy).
run_enqueued = Signal()
#: An executor claimed the run for the first time (not for each later slice of it).
run_started = Signal()
#: The run stopped on request (or was paused before anything ran it).
run_paused = Signal()
#: A paused or interrupted run was put back on the queue.
run_resumed = Signal()
#: The run's executor was told to stop (SIGINT/SIGTERM, a worker shutting down, a lost connection).
run_interrupted = Signal()
#: The run was cancelled: it will not go on.
run_cancelled = Signal()
#: The run processed its whole collection; ``run.result`` holds what ``on_complete()`` returned.
run_succeeded = Signal()
#: The run ended with an error: ``error`` is the exception (``run.error_class`` names its class).
run_errored = Signal()

#: Sent once per run, by the scheduler, when a run has been active for longer than its
#: processor's ``expected_duration`` (or the OVERDUE_AFTER setting). Arguments: ``run``
#: and ``active_for`` (a timedelta). Sender: the Run class.
run_overdue = Signal()

#: Internal: sent by the watchdog job after it recovered stale runs, so that the layer that
#: owns the scheduler (connected in ``AppConfig.ready()``) restarts its job chain if it died.
watchdog_ran = Signal()
