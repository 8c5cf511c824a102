"""CSV input: the stream reader, the runner's checks, runs over a file, the admin, retention."""

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.core.checks import run_checks
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from maintenance_tasks import Processor
from maintenance_tasks.csvsource import CSVFile, encoding_problem
from maintenance_tasks.engine import Engine
from maintenance_tasks.exceptions import InvalidCSV, InvalidProcessor, RunAlreadyActive
from maintenance_tasks.models import Run
from maintenance_tasks.registry import path_of, registry
from maintenance_tasks.retention import prune_runs
from maintenance_tasks.runner import Runner
from maintenance_tasks.status import RunStatus
from testproject.demo.models import Article
from testproject.testapp.models import Seen

APP = "testproject.testapp.maintenance."
ROWS = "RecordRows"
BOM = b"\xef\xbb\xbf"
#: Five rows; the second has a newline and a quoted comma, and a blank line precedes the last.
SAMPLE = (
    b'id,email\r\n1,a@example.com\r\n2,"two\r\nlines, quoted"\r\n3,c@example.com\r\n4,d@example.com\r\n\r\n5,e@x\r\n'
)
SAMPLE_ROWS = [
    {"id": "1", "email": "a@example.com"},
    {"id": "2", "email": "two\r\nlines, quoted"},
    {"id": "3", "email": "c@example.com"},
    {"id": "4", "email": "d@example.com"},
    {"id": "5", "email": "e@x"},
]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """Keep the stored CSV files of each test in a directory of its own."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return tmp_path / "media"


@pytest.fixture
def run_now(django_capture_on_commit_callbacks):
    """Start a run of a test processor and perform it here (the immediate backend, on commit)."""

    def run(name, **options):
        with django_capture_on_commit_callbacks(execute=True):
            run = Runner.run(APP + name, **options)
        run.refresh_from_db()
        return run

    return run


def stored_files(media):
    return sorted(path.name for path in media.rglob("*") if path.is_file())


def seen_rows():
    return [json.loads(value) for value in Seen.objects.order_by("pk").values_list("value", flat=True)]


def rows_of(data, cursor=None, **options):
    return list(CSVFile(io.BytesIO(data), **options).rows(cursor))


# -- the reader ------------------------------------------------------------------------------------


def test_rows_are_dicts_and_quoted_newlines_stay_in_their_field():
    assert [row for row, _ in rows_of(SAMPLE)] == SAMPLE_ROWS


def test_from_any_cursor_the_rest_of_the_rows_follow_exactly():
    pairs = rows_of(SAMPLE)
    for index, (_, cursor) in enumerate(pairs):
        assert [row for row, _ in rows_of(SAMPLE, cursor)] == SAMPLE_ROWS[index + 1 :], cursor
        # The offset is where the next row (or a blank line before it) starts: nothing is read twice.
        rest = SAMPLE[int(cursor.split(":")[0]) :].lstrip(b"\r\n")
        assert rest.startswith(b"%d," % (index + 2)) if index < 4 else rest == b""
    assert pairs[1][1] == f"{SAMPLE.index(b'3,c@')}:4"  # after the two-line row: 4 lines read


def test_a_byte_order_mark_is_not_part_of_the_first_column():
    assert [row for row, _ in rows_of(BOM + SAMPLE)] == SAMPLE_ROWS
    assert CSVFile(io.BytesIO(BOM + SAMPLE), required=("id",)).scan() == 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"id,email\n1,a\n2,\xff\n", "line 3: cannot be decoded as utf-8-sig (byte b'\\xff' at column 3)."),
        (b'id,email\n1,a\n2,"b"c\n', "line 3: malformed row: ',' expected after '\"'."),
        (b"id,email\n1,a\n\n2,b,c\n", "line 4: malformed row: 3 fields, the header has 2."),
        (b'id,email\n1,a\n2,"never closed\n3,c\n', "line 3: malformed row: unexpected end of data."),
    ],
)
def test_a_bad_row_names_its_line_after_the_rows_before_it(data, message):
    rows = CSVFile(io.BytesIO(data)).rows()
    assert next(rows)[0] == {"id": "1", "email": "a"}
    with pytest.raises(InvalidCSV) as error:
        next(rows)
    assert str(error.value) == message


def test_the_header_must_have_the_required_columns_once():
    with pytest.raises(InvalidCSV, match=r"^The header row lacks the column\(s\) email \(it has: id, name\)\.$"):
        CSVFile(io.BytesIO(b"id,name\n1,x\n"), required=("id", "email")).scan()
    with pytest.raises(InvalidCSV, match="names a column twice: id, id"):
        CSVFile(io.BytesIO(b"id,id\n1,2\n")).scan()
    with pytest.raises(InvalidCSV, match="The file is empty"):
        CSVFile(io.BytesIO(b"\n\n")).scan()


def test_another_encoding_and_encodings_that_cannot_be_read_line_by_line():
    latin = "id,name\n1,Zoë\n".encode("latin-1")
    assert [row for row, _ in rows_of(latin, encoding="latin-1")] == [{"id": "1", "name": "Zoë"}]
    assert encoding_problem("utf-8") is None and encoding_problem("cp1252") is None
    assert "does not write newlines as ASCII bytes" in encoding_problem("utf-16")
    assert encoding_problem("klingon") == "csv_encoding: unknown encoding 'klingon'."


# -- runs over a file ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_processes_each_row_as_a_dict_and_counts_them_first(media, run_now):
    run = run_now(ROWS, csv_file=io.BytesIO(BOM + SAMPLE))
    assert run.status == RunStatus.SUCCEEDED
    assert (run.tick_count, run.tick_total) == (5, 5)
    assert seen_rows() == SAMPLE_ROWS
    assert run.cursor == f"{len(BOM + SAMPLE)}:8"
    assert run.csv_file.name.startswith("maintenance_tasks/csv/")
    assert (media / run.csv_file.name).read_bytes() == BOM + SAMPLE
    assert stored_files(media) == ["rows.csv"]


@pytest.mark.django_db
def test_process_batch_gets_a_list_of_dicts(tmp_path, run_now):
    path = tmp_path / "ids.csv"
    path.write_bytes(b"id\n" + b"".join(b"%d\n" % i for i in range(2500)))
    with path.open("rb") as file:
        run = run_now("RecordRowIds", csv_file=file)
    assert run.status == RunStatus.SUCCEEDED and run.tick_total == 2500
    assert list(Seen.objects.order_by("pk").values_list("value", flat=True)) == [str(i) for i in range(2500)]
    assert Path(run.csv_file.name).name == "ids.csv"


@pytest.mark.django_db
def test_an_interrupted_run_resumes_at_the_next_row():
    run = Runner.create(APP + ROWS, csv_file=io.BytesIO(SAMPLE))  # 3 rows a batch
    run = Engine(run, should_stop=lambda: True).perform()  # stops after the first batch
    assert run.status == RunStatus.INTERRUPTED
    assert run.tick_count == 3 and seen_rows() == SAMPLE_ROWS[:3]
    Runner.resume(run, execute=False)
    run = Engine(run).perform()
    assert run.status == RunStatus.SUCCEEDED and run.tick_count == 5
    assert seen_rows() == SAMPLE_ROWS  # each row exactly once, in order


@pytest.mark.django_db
def test_a_paused_run_resumes_at_the_next_row(django_capture_on_commit_callbacks):
    run = Runner.create(APP + ROWS, csv_file=io.BytesIO(SAMPLE))
    run = Engine(run, should_stop=lambda: bool(Run.objects.get(pk=run.pk).pause())).perform()
    assert run.status == RunStatus.PAUSED and seen_rows() == SAMPLE_ROWS[:3]
    with django_capture_on_commit_callbacks(execute=True):
        Runner.resume(run)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and seen_rows() == SAMPLE_ROWS


@pytest.mark.django_db
def test_a_malformed_row_errors_the_run_with_its_line_after_the_rows_before_it(run_now):
    data = b"id,email\n1,a\n2,b\n3,c\n4,d\n5,e,f\n6,g\n"
    run = run_now(ROWS, csv_file=io.BytesIO(data))
    assert run.status == RunStatus.ERRORED
    assert run.error_class == "maintenance_tasks.exceptions.InvalidCSV"
    assert run.error_message == "line 6: malformed row: 3 fields, the header has 2."
    assert [row["id"] for row in seen_rows()] == ["1", "2", "3", "4"]  # the batch before it is done
    assert run.tick_count == 4 and run.cursor == f"{data.index(b'5,e')}:5"


@pytest.mark.django_db
def test_another_encoding_is_read_with_it(run_now):
    run = run_now("RecordLatin1Rows", csv_file=io.BytesIO("id,name\n1,Zoë\n".encode("latin-1")))
    assert run.status == RunStatus.SUCCEEDED and seen_rows() == [{"id": "1", "name": "Zoë"}]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "file", "message"),
    [
        (ROWS, None, "RecordRows reads its rows from a CSV file: give one."),
        ("IncrementItems", io.BytesIO(SAMPLE), "IncrementItems does not read a CSV file (it has no csv_collection): start it without one."),
        (ROWS, io.BytesIO(b"name,email\n1,a\n"), "The header row lacks the column(s) id (it has: name, email)."),
        (ROWS, io.BytesIO(b"id\n1\n" * 1000 + b"\xe9\n"), "line 2001: cannot be decoded as utf-8-sig (byte b'\\xe9' at column 1)."),
        (ROWS, io.BytesIO(b""), "The file is empty: the first line must name the columns."),
        (ROWS, io.StringIO("id\n1\n"), "The CSV file is open in text mode: open it in binary mode ('rb')."),
        (ROWS, "rows.csv", "The CSV file must be a file object open in binary mode, not str."),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_beside_its_field_with_nothing_saved(media, name, file, message):
    with pytest.raises(ValidationError) as error:
        Runner.run(APP + name, csv_file=file)
    assert error.value.message_dict == {"csv_file": [message]}
    assert not Run.objects.exists() and stored_files(media) == []


@pytest.mark.django_db
def test_a_file_refused_by_the_database_is_not_kept(media):
    Runner.create(APP + ROWS, csv_file=io.BytesIO(SAMPLE))
    with pytest.raises(RunAlreadyActive):
        Runner.create(APP + ROWS, csv_file=io.BytesIO(SAMPLE))
    assert Run.objects.count() == 1 and len(stored_files(media)) == 1


@pytest.mark.django_db
def test_a_run_whose_file_is_gone_errors_saying_so():
    run = Runner.create(APP + ROWS, csv_file=io.BytesIO(SAMPLE))
    Run.objects.filter(pk=run.pk).update(csv_file="")
    run = Engine(Run.objects.get(pk=run.pk)).perform()
    assert run.status == RunStatus.ERRORED
    assert run.error_message == "RecordRows reads a CSV file, but the run has none."


# -- deleting runs deletes their files -------------------------------------------------------------


@pytest.mark.django_db
def test_retention_deletes_the_files_of_the_runs_it_deletes(media, run_now, django_capture_on_commit_callbacks):
    old = run_now(ROWS, csv_file=io.BytesIO(SAMPLE))
    latest = run_now(ROWS, csv_file=io.BytesIO(SAMPLE))
    Run.objects.filter(pk=old.pk).update(ended_at=timezone.now() - timedelta(days=31))
    assert len(stored_files(media)) == 2
    with django_capture_on_commit_callbacks(execute=True):
        assert prune_runs()["succeeded"] == 1
    assert not Run.objects.filter(pk=old.pk).exists()
    assert stored_files(media) == [Path(latest.csv_file.name).name]  # only the deleted run's file went
    with django_capture_on_commit_callbacks(execute=True):
        latest.task.delete()  # deleting a run any other way (here: with its task) deletes its file too
    assert stored_files(media) == []


# -- checks ----------------------------------------------------------------------------------------


def test_csv_storage_must_be_an_alias_of_storages(settings):
    settings.MAINTENANCE_TASKS = {"CSV_STORAGE": "s3"}
    errors = [error for error in run_checks() if error.id == "maintenance_tasks.E017"]
    assert [error.msg for error in errors] == [
        "MAINTENANCE_TASKS['CSV_STORAGE'] must be an alias of STORAGES, not 's3'."
    ]


class CSVWithCollection(Processor):
    csv_collection = True

    def collection(self):
        return [1]

    def process(self, row):
        pass


class CSVOnSchedule(Processor):
    csv_collection = True
    schedule = "0 * * * *"
    csv_headers = "id"
    csv_encoding = "utf-16"
    csv_file: str = ""

    def process(self, row):
        pass


def test_a_csv_processor_takes_its_rows_from_the_file_only():
    assert [(error.id, error.msg.split(": ", 1)[1]) for error in CSVWithCollection.check()] == [
        ("maintenance_tasks.E035", "csv_collection reads the rows of the run's CSV file: remove collection() and enumerate().")
    ]  # fmt: skip
    messages = [error.msg.split(": ", 1)[1] for error in CSVOnSchedule.check() if error.id == "maintenance_tasks.E035"]
    assert messages == [
        "csv_headers must be a tuple of column names, not 'id'.",
        "csv_encoding: 'utf-16' does not write newlines as ASCII bytes; use UTF-8, Latin-1 or the like.",
        "csv_file names the file a CSV processor is started with: rename that parameter.",
        "csv_collection needs a file for each run: it cannot have a schedule or run_on_deploy.",
    ]


@pytest.mark.django_db
def test_a_csv_processor_that_cannot_run_is_refused_before_its_file_is_read(media):
    registry._processors = {**registry.processors(), path_of(CSVWithCollection): CSVWithCollection}
    with pytest.raises(InvalidProcessor, match="remove collection"):
        Runner.run(CSVWithCollection, csv_file=io.BytesIO(SAMPLE))
    assert stored_files(media) == []


# -- the admin -------------------------------------------------------------------------------------


def login(client, *perms):
    user = User.objects.create_user("csv", is_staff=True)
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm, content_type__app_label="maintenance_tasks"))
    client.force_login(user)


def start_url():
    return reverse("admin:maintenance_tasks_processor", args=[APP + ROWS])


@pytest.mark.django_db
def test_the_start_form_uploads_the_file_and_the_run_page_links_it(client, media, django_capture_on_commit_callbacks):
    login(client, "view_task", "view_run", "start_run")
    page = client.get(start_url()).content.decode()
    assert 'enctype="multipart/form-data"' in page and 'type="file" name="param-csv_file"' in page
    assert "Its header row must name the columns id." in page
    upload = SimpleUploadedFile("people.csv", BOM + SAMPLE, content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(start_url(), {"_start": "Start", "param-csv_file": upload})
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "admin:maintenance_tasks_run_change", args=[run.pk]
    )
    assert run.status == RunStatus.SUCCEEDED and seen_rows() == SAMPLE_ROWS  # the immediate backend ran it
    page = client.get(response["Location"]).content.decode()
    download = reverse("admin:maintenance_tasks_run_csv", args=[run.pk])
    assert f'<a href="{download}" download>people.csv</a> ({len(BOM + SAMPLE)}\xa0bytes)' in page
    response = client.get(download)
    assert response.status_code == 200 and b"".join(response.streaming_content) == BOM + SAMPLE
    assert response["Content-Disposition"] == 'attachment; filename="people.csv"'


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "RecordRows reads its rows from a CSV file: give one."),
        ({"param-csv_file": SimpleUploadedFile("x.csv", b"email\na\n")}, "The header row lacks the column(s) id (it has: email)."),
    ],
)  # fmt: skip
def test_a_bad_upload_is_refused_beside_the_file_input(client, media, files, message):
    login(client, "view_task", "start_run")
    response = client.post(start_url(), {"_start": "Start", **files})
    assert response.status_code == 400
    assert response.context["page"].form.errors == {"csv_file": [message]}
    assert (
        '<ul class="errorlist"'
        in response.content.decode().split('name="param-csv_file"')[0].rsplit("field-csv_file", 1)[1]
    )
    assert not Run.objects.exists() and stored_files(media) == []


@pytest.mark.django_db
def test_a_file_for_a_processor_without_csv_input_has_no_field_to_come_in_by(client):
    login(client, "view_task", "start_run")
    url = reverse("admin:maintenance_tasks_processor", args=[APP + "RecordOnce"])
    assert 'type="file"' not in client.get(url).content.decode()
    client.post(url, {"_start": "Start", "param-csv_file": SimpleUploadedFile("x.csv", SAMPLE)})
    assert Run.objects.get().csv_file.name == ""  # an unknown field is ignored, as any other


@pytest.mark.django_db
def test_downloading_the_file_needs_the_view_permission(client, media):
    run = Runner.create(APP + ROWS, csv_file=io.BytesIO(SAMPLE))
    download = reverse("admin:maintenance_tasks_run_csv", args=[run.pk])
    login(client, "start_run")
    assert client.get(download).status_code == 403
    User.objects.get().user_permissions.add(Permission.objects.get(codename="view_run"))
    response = client.get(download)
    assert response.status_code == 200 and b"".join(response.streaming_content) == SAMPLE
    other = Runner.create(APP + "RecordOnce")
    assert client.get(reverse("admin:maintenance_tasks_run_csv", args=[other.pk])).status_code == 404
    (media / run.csv_file.name).unlink()
    assert client.get(download).status_code == 404
    assert (
        "missing from its storage"
        in client.get(reverse("admin:maintenance_tasks_run_change", args=[run.pk])).content.decode()
    )


@pytest.mark.django_db
def test_the_demo_imports_its_sample_file(django_capture_on_commit_callbacks):
    sample = Path(__file__).parent.parent / "testproject/demo/articles.csv"
    with sample.open("rb") as file, django_capture_on_commit_callbacks(execute=True):
        Runner.run("testproject.demo.maintenance.ImportArticles", csv_file=file)
    assert list(Article.objects.order_by("pk").values_list("title", "published")) == [
        ("Hello world", True),
        ('Commas, quotes "and" all', False),
        ("A title\nover two lines", True),
        ("Django tips", False),
    ]
