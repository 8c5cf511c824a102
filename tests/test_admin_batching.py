"""The admin's batch size, batch time and sleep ratio: the start form's "Advanced" part, and tuning an active run."""

# ruff: noqa: F811 (the operator and viewer fixtures come from test_admin)

import re

import pytest
from django.contrib.admin.models import LogEntry

from maintenance_tasks.models import Run, RunEvent
from maintenance_tasks.status import RunStatus
from testproject.testapp.models import Item

from .factories import RunFactory, TaskFactory
from .test_admin import messages_of, operator, processor_url, run_url, viewer  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

PACED = "testproject.testapp.maintenance.PacedBatches"


def test_the_start_form_has_batch_size_and_batch_time_in_a_collapsed_advanced_part(operator, client):
    html = client.get(processor_url(PACED)).content.decode()
    advanced = re.search(r'<details class="mt-advanced">(.*?)</details>', html, re.S)
    assert advanced, "no closed Advanced part"
    assert 'name="run-batch_size"' in advanced[1] and 'name="run-batch_time"' in advanced[1]
    assert 'name="run-sleep_ratio"' in advanced[1]


def test_the_admin_starts_a_run_with_its_own_batch_size_and_time(operator, client, django_capture_on_commit_callbacks):
    Item.objects.bulk_create(Item() for _ in range(30))
    params = {f"param-{name}": "0" for name in ("per_item", "slow_per_item", "slow_from", "slow_until", "kill_at")}
    post = {**params, "run-batch_size": "7", "run-batch_time": "3600", "run-sleep_ratio": "0.5", "_start": "Start"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(processor_url(PACED), post, follow=True)
    run = Run.objects.get()
    assert response.redirect_chain == [(run_url(run), 302)]
    assert (run.status, run.batch_size, run.batch_time, run.tick_count) == (RunStatus.SUCCEEDED, 7, 3600.0, 30)
    assert (run.commits, run.batch_size_max, run.sleep_ratio) == (1, 7, 0.5)  # batches of at most 7, one commit
    page = client.get(run_url(run)).content.decode()
    own = "batch_size 7, batch_time 3600.0s, sleep_ratio 0.5"
    assert f"batches of 7 items; 1 commit (this run's own: {own})" in page


@pytest.mark.parametrize(
    ("post", "message"),
    [
        ({"run-batch_size": "0"}, "batch_size must be a whole number, 1 or more, not 0."),
        ({"run-batch_size": "2.5"}, "Enter a whole number."),
        ({"run-batch_time": "0"}, "batch_time must be a number of seconds, above 0 and at most 3600, not 0.0."),
        ({"run-batch_time": "soon"}, "Enter a number."),
        ({"run-sleep_ratio": "-1"}, "sleep_ratio must be a number from 0 to 100, not -1.0."),
        ({"run-sleep_ratio": "101"}, "sleep_ratio must be a number from 0 to 100, not 101.0."),
    ],
)
def test_bad_advanced_values_are_shown_beside_their_field_and_nothing_starts(operator, client, post, message):
    response = client.post(processor_url(PACED), {**post, "_start": "Start"})
    assert response.status_code == 400
    html = response.content.decode()
    assert '<details class="mt-advanced" open>' in html
    assert message in html.replace("&#x27;", "'")
    assert not Run.objects.exists()


def test_an_operator_tunes_an_active_run_from_its_page(operator, client):
    run = RunFactory(running=True, task=TaskFactory(processor=PACED))
    page = client.get(run_url(run)).content.decode()
    assert 'id="tune-form"' in page
    post = {"batch_size": "5", "batch_time": "0.25", "sleep_ratio": "1"}
    response = client.post(run_url(run, "tune"), post, follow=True)
    assert response.redirect_chain == [(run_url(run), 302)]
    assert messages_of(response) == [f"Tuned run {run.pk}: batch size 5, batch time 0.25s, sleep ratio 1."]
    run.refresh_from_db()
    assert (run.status, run.batch_size, run.batch_time, run.sleep_ratio) == (RunStatus.RUNNING, 5, 0.25, 1.0)
    event = RunEvent.objects.get(run=run, action="tune")
    assert (event.source, event.user, event.detail["batch_size"]) == ("admin", "alice", [None, 5])
    assert event.detail["sleep_ratio"] == [None, 1.0]
    assert LogEntry.objects.filter(object_id=str(run.pk)).exists()
    # The form shows the run's own values; a ratio of 0 is a value (no sleep), not the processor's.
    assert 'name="sleep_ratio" value="1.0"' in client.get(run_url(run)).content.decode()
    response = client.post(run_url(run, "tune"), {"batch_size": "", "batch_time": "", "sleep_ratio": "0"}, follow=True)
    assert messages_of(response) == [
        f"Tuned run {run.pk}: batch size the processor's, batch time the processor's, sleep ratio 0."
    ]
    run.refresh_from_db()
    assert (run.batch_size, run.batch_time, run.sleep_ratio) == (None, None, 0.0)
    # Emptied fields give the processor's values back.
    client.post(run_url(run, "tune"), {"batch_size": "", "batch_time": "", "sleep_ratio": ""})
    run.refresh_from_db()
    assert run.sleep_ratio is None


def test_a_bad_tuning_value_changes_nothing(operator, client):
    run = RunFactory(running=True, task=TaskFactory(processor=PACED))
    response = client.post(run_url(run, "tune"), {"batch_size": "-3", "batch_time": ""}, follow=True)
    assert messages_of(response) == [f"Run {run.pk} not tuned: batch_size must be a whole number, 1 or more, not -3."]
    run.refresh_from_db()
    assert run.batch_size is None and not RunEvent.objects.filter(action="tune").exists()


def test_an_ended_run_cannot_be_tuned_and_has_no_tune_form(operator, client):
    run = RunFactory(succeeded=True, task=TaskFactory(processor=PACED))
    assert 'id="tune-form"' not in client.get(run_url(run)).content.decode()
    response = client.post(run_url(run, "tune"), {"batch_size": "5"}, follow=True)
    assert messages_of(response) == [f"Run {run.pk} is succeeded: cannot tune it."]
    assert not RunEvent.objects.filter(action="tune").exists()


def test_a_viewer_sees_no_tune_form_and_may_not_tune(viewer, client):
    run = RunFactory(running=True, task=TaskFactory(processor=PACED))
    assert 'id="tune-form"' not in client.get(run_url(run)).content.decode()
    assert client.post(run_url(run, "tune"), {"batch_size": "5"}).status_code == 403
    assert client.get(run_url(run, "tune")).status_code == 405
    run.refresh_from_db()
    assert run.batch_size is None
