"""Run output: ``self.log()`` lines and ``self.status``, kept bounded in the run, on the run page and the CLI."""

import io
import time
from types import SimpleNamespace

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError, OutputWrapper
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from maintenance_tasks import Processor
from maintenance_tasks.conf import app_settings
from maintenance_tasks.engine import Engine
from maintenance_tasks.models import Run
from maintenance_tasks.output import LINE_LIMIT, STATUS_LIMIT, Output, OutputFollower, line_text, one_line
from maintenance_tasks.progress import ProgressBar
from maintenance_tasks.registry import registry
from maintenance_tasks.runner import Runner
from maintenance_tasks.status import RunStatus

from .factories import ItemFactory, RunFactory
from .test_admin import operator, run_url  # noqa: F401 (a fixture)

LOG = "testproject.testapp.maintenance.LogEveryItem"


def stored_run(output=(), dropped=0, status_line=""):
    """Stand in for a run: what ``Output.take()`` reads and sets."""
    return SimpleNamespace(output=list(output), output_dropped=dropped, status_line=status_line)


def texts(run):
    return [line["text"] for line in run.output]


def perform(config, **engine_options):
    return Engine(Runner.create(LOG, config), **engine_options).perform()


def output_settings(settings, lines):
    settings.MAINTENANCE_TASKS = {**settings.MAINTENANCE_TASKS, "OUTPUT_LINES": lines}


# -- the buffer ------------------------------------------------------------------------------------


def test_the_buffer_keeps_the_last_lines_and_counts_the_others():
    output, run = Output(3), stored_run()
    for number in range(5):
        output.log(number)
    assert len(output.lines) == 3
    fields = output.take(run)
    assert set(fields) == {"output", "output_dropped"}
    assert texts(run) == ["2", "3", "4"] and run.output_dropped == 2
    assert fields["output"] is run.output and fields["output_dropped"] == 2
    assert run.output[0]["at"].endswith("+00:00")  # UTC, to the second
    assert output.take(run) == {}  # nothing new: nothing to write


def test_new_lines_merge_with_the_stored_ones_within_the_bound():
    output = Output(3)
    run = stored_run([{"at": "2026-01-02T03:04:05+00:00", "text": t} for t in ("a", "b")], dropped=7)
    output.log("c")
    output.log("d")
    output.take(run)
    assert texts(run) == ["b", "c", "d"] and run.output_dropped == 8
    assert run.output[0]["at"] == "2026-01-02T03:04:05+00:00"


def test_a_lower_bound_trims_the_stored_lines_and_zero_keeps_none():
    run = stored_run([{"at": "2026-01-02T03:04:05+00:00", "text": str(n)} for n in range(5)])
    output = Output(2)
    output.log("new")
    output.take(run)
    assert texts(run) == ["4", "new"] and run.output_dropped == 4
    output = Output(0)
    output.log("gone")
    output.take(run)
    assert run.output == [] and run.output_dropped == 7


def test_lines_are_made_storable_and_cut():
    output, run = Output(5), stored_run()
    output.log("nul\x00 and a lone surrogate \udc80")
    output.log("x" * (LINE_LIMIT * 3))
    output.take(run)
    assert texts(run)[0] == "nul\\x00 and a lone surrogate \\udc80"
    assert len(texts(run)[1]) <= LINE_LIMIT + 60 and texts(run)[1].endswith("more characters cut]")


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("copying rows", "copying rows"),
        ("  first line \nsecond line", "first line"),
        (None, ""),
        (42, "42"),
        ("a\x00b", "a\\x00b"),
        ("y" * 300, "y" * (STATUS_LIMIT - 1) + "…"),
    ],
)
def test_a_status_is_one_line_of_at_most_255_characters(value, status):
    assert one_line(value) == status


def test_a_status_is_written_only_when_set_to_something_new():
    processor, run = Processor(), stored_run(status_line="done 5")
    assert processor.status == ""
    processor.status = "done 5"
    assert processor.status == "done 5"
    assert processor.output_changes(run) == {}  # the run says so already
    processor.status = "done 6\nmore"
    assert processor.output_changes(run) == {"status_line": "done 6"} and run.status_line == "done 6"
    assert processor.output_changes(run) == {}


def test_the_follower_gives_the_lines_not_shown_yet():
    line = {"at": "2026-01-02T03:04:05+00:00", "text": "old"}
    run = stored_run([line], dropped=4)
    follower = OutputFollower(run)
    assert follower.new_lines(run) == []
    output = Output(3)
    for number in range(6):  # 5 go before the follower looks again
        output.log(f"line {number}")
    output.take(run)
    new = follower.new_lines(run)
    assert new[0] == "[3 lines not kept]" and [text.split(" ", 1)[1] for text in new[1:]] == [
        "line 3",
        "line 4",
        "line 5",
    ]
    assert follower.new_lines(run) == []
    assert line_text(line) == "03:04:05 old"  # TIME_ZONE is UTC here
    assert line_text("a line of another shape") == "a line of another shape"


def test_a_bad_output_lines_setting_is_one_clear_error_and_reads_within_bounds(settings):
    settings.MAINTENANCE_TASKS = {"OUTPUT_LINES": "many"}
    messages = [m.msg for m in checks.run_checks(tags=[checks.Tags.compatibility]) if m.id.startswith("maintenance")]
    assert messages == ["MAINTENANCE_TASKS['OUTPUT_LINES'] must be a whole number from 0 to 10,000, not 'many'."]
    assert app_settings.OUTPUT_LINES == 200  # the default, if it slips past the checks
    for value, lines in [(10**9, 10_000), (-5, 0), (50, 50)]:
        settings.MAINTENANCE_TASKS = {"OUTPUT_LINES": value}
        assert lines == app_settings.OUTPUT_LINES
        assert Processor()._output.lines.maxlen == lines


# -- in the engine ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_keeps_its_last_lines_and_its_status(settings):
    output_settings(settings, 10)
    run = perform({"items": 25, "status_every": 5})
    assert run.status == RunStatus.SUCCEEDED
    run = Run.objects.get(pk=run.pk)
    assert texts(run) == [f"item {n}" for n in range(15, 25)] and run.output_dropped == 15
    assert run.status_line == "at item 20 of 25"


@pytest.mark.django_db
def test_lines_and_status_are_saved_with_each_checkpoint_while_the_run_goes_on(settings):
    settings.MAINTENANCE_TASKS = {**settings.MAINTENANCE_TASKS, "CHECKPOINT_INTERVAL": 1e-9}  # after every item
    seen = []

    def on_progress(run):
        stored = Run.objects.get(pk=run.pk)
        seen.append((stored.status, texts(stored), stored.status_line))

    perform({"items": 3}, on_progress=on_progress)
    assert seen == [
        (RunStatus.RUNNING, ["item 0"], "at item 0 of 3"),
        (RunStatus.RUNNING, ["item 0", "item 1"], "at item 1 of 3"),
        (RunStatus.RUNNING, ["item 0", "item 1", "item 2"], "at item 2 of 3"),
        (RunStatus.SUCCEEDED, ["item 0", "item 1", "item 2"], "at item 2 of 3"),
    ]


@pytest.mark.django_db
def test_output_is_kept_bounded_across_slices_and_resumes(settings):
    """Every slice builds its own processor: each saves its lines after the ones before, within the bound."""
    output_settings(settings, 10)
    run = Runner.create(LOG, {"items": 25})
    slices = 0
    while run.status == RunStatus.ENQUEUED:  # one item per slice: the slice is over after the first
        run = Engine(Run.objects.get(pk=run.pk), slice_seconds=0).perform()
        slices += 1
        assert run.output_dropped + len(run.output) == run.tick_count
    assert run.status == RunStatus.SUCCEEDED and slices == 26  # the last one finds the end
    run = Run.objects.get(pk=run.pk)
    assert texts(run) == [f"item {n}" for n in range(15, 25)] and run.output_dropped == 15

    class StopAfter:
        calls = 0

        def __call__(self):
            self.calls += 1
            return self.calls >= 4

    run = perform({"items": 25, "label": "again"}, should_stop=StopAfter())
    assert run.status == RunStatus.INTERRUPTED and texts(run) == [f"again {n}" for n in range(4)]
    Runner.resume(run, execute=False)
    run = Engine(Run.objects.get(pk=run.pk)).perform()
    assert texts(Run.objects.get(pk=run.pk)) == [f"again {n}" for n in range(15, 25)] and run.output_dropped == 15


@pytest.mark.django_db
def test_lines_logged_before_an_error_are_kept_on_the_errored_run():
    run = perform({"items": 10, "fail_at": 3})
    assert run.status == RunStatus.ERRORED
    run = Run.objects.get(pk=run.pk)
    assert texts(run) == ["item 0", "item 1", "item 2", "item 3"] and run.status_line == "at item 2 of 10"


@pytest.mark.django_db
def test_a_million_items_logged_one_by_one_stay_within_the_bound():
    started = time.monotonic()
    run = perform({"items": 1_000_000, "status_every": 100_000})
    assert run.status == RunStatus.SUCCEEDED
    run = Run.objects.get(pk=run.pk)
    assert len(run.output) == 200  # OUTPUT_LINES' default
    assert texts(run) == [f"item {n}" for n in range(999_800, 1_000_000)]
    assert run.output_dropped == 1_000_000 - 200
    assert run.status_line == "at item 900000 of 1000000"
    print(f"a million lines logged in {time.monotonic() - started:.1f}s")  # noqa: T201 (shown with -s)


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["IncrementItems", "IncrementItemsAutocommit"])
def test_checkpoints_of_a_run_that_logs_nothing_write_no_output(name):
    ItemFactory.create_batch(30)
    run = Runner.create(f"testproject.testapp.maintenance.{name}")
    with CaptureQueriesContext(connection) as queries:
        run = Engine(run).perform()
    assert run.status == RunStatus.SUCCEEDED
    updates = [query["sql"] for query in queries.captured_queries if query["sql"].startswith("UPDATE")]
    assert len(updates) > 2 and not any("output" in sql or "status_line" in sql for sql in updates)


class OddText(Processor):
    """Log and set as status what a database refuses to store as is: NUL, a lone surrogate."""

    def process(self):
        self.log(ODD)
        self.status = ODD


ODD = "nul\x00 lone \udc80 <b>bold</b>"


@pytest.mark.django_db
def test_text_a_database_refuses_is_stored_escaped(monkeypatch):
    path = f"{__name__}.OddText"
    monkeypatch.setattr(registry, "_processors", {**registry.processors(), path: OddText})
    run = Engine(Runner.create(path)).perform()
    assert run.status == RunStatus.SUCCEEDED
    run = Run.objects.get(pk=run.pk)
    assert texts(run) == ["nul\\x00 lone \\udc80 <b>bold</b>"] and run.status_line == texts(run)[0]


# -- the command line ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_command_prints_the_lines_as_they_come_and_the_status(settings):
    settings.MAINTENANCE_TASKS = {**settings.MAINTENANCE_TASKS, "LOG_INTERVAL": 1e-6}
    out = io.StringIO()
    call_command("run_maintenance_task", "LogEveryItem", "--arg", "items=3", stdout=out)
    lines = out.getvalue().splitlines()
    printed = [line.split(" ", 1)[1] for line in lines if line[:2].isdigit()]
    assert printed == ["item 0", "item 1", "item 2"]
    assert any(line.startswith("Run ") and line.endswith(" – at item 2 of 3") for line in lines)  # progress, status
    assert "Succeeded in" in lines[-1]


@pytest.mark.django_db
def test_the_command_prints_nothing_at_verbosity_0():
    out = io.StringIO()
    call_command("run_maintenance_task", "LogEveryItem", "--arg", "items=3", stdout=out, verbosity=0)
    assert out.getvalue() == ""


@pytest.mark.django_db
def test_an_errored_command_printed_the_lines_before_the_error():
    out = io.StringIO()
    with pytest.raises(CommandError, match="item 1 failed"):
        call_command("run_maintenance_task", "LogEveryItem", "--arg", "items=5", "--arg", "fail_at=1", stdout=out)
    assert [line.split(" ", 1)[1] for line in out.getvalue().splitlines() if line[:2].isdigit()] == ["item 0", "item 1"]


@pytest.mark.django_db
def test_the_progress_bar_prints_the_lines_above_it_and_the_status_beside_it():
    run = Runner.create(LOG, {"items": 3})
    bar, lines = io.StringIO(), io.StringIO()
    progress = ProgressBar(run, bar, OutputWrapper(lines))
    Engine(run, on_progress=progress).perform()
    progress.close()
    assert [line.split(" ", 1)[1] for line in lines.getvalue().splitlines()] == ["item 0", "item 1", "item 2"]
    assert "at item 2 of 3" in bar.getvalue().rsplit("\r", 1)[-1]  # the bar's last drawing


# -- the run page ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_run_page_shows_the_lines_escaped_and_how_many_went(operator, client):  # noqa: F811
    line = {"at": "2026-01-02T03:04:05+00:00", "text": "<script>alert(1)</script>"}
    run = RunFactory(running=True, output=[line], output_dropped=1234, status_line="<b>half way</b>")
    html = client.get(run_url(run)).content.decode()
    assert "1,234 earlier lines not kept." in html
    assert '03:04:05</span> <span class="mt-output-text">&lt;script&gt;alert(1)&lt;/script&gt;' in html
    assert "&lt;b&gt;half way&lt;/b&gt;" in html and "<b>half" not in html and "<script>alert" not in html
    state = client.get(run_url(run, "progress")).json()
    assert state["output"] == [["03:04:05", "<script>alert(1)</script>"]]  # JSON: the page sets it as text
    assert (state["output_total"], state["output_dropped_text"]) == (1235, "1,234 earlier lines not kept.")
    assert state["status_line"] == "<b>half way</b>"


@pytest.mark.django_db
def test_a_run_without_output_has_its_block_hidden(operator, client):  # noqa: F811
    run = RunFactory(succeeded=True)
    html = client.get(run_url(run)).content.decode()
    assert f'id="run-output" data-run="{run.pk}" data-total="0" hidden' in html
    assert 'data-field="status_line" hidden' in html


@pytest.mark.django_db
def test_the_task_page_shows_the_status_of_its_active_run(operator, client):  # noqa: F811
    run = RunFactory(running=True, task__processor=LOG, status_line="copying <rows>")
    html = client.get(reverse("admin:maintenance_tasks_processor", args=[LOG])).content.decode()
    assert '<span class="mt-status-line" data-field="status_line">copying &lt;rows&gt;</span>' in html
    assert f'data-run="{run.pk}"' in html and 'id="run-output"' not in html  # the output is on the run page
