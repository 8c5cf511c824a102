"""Runbook links: a task page's start form filled in from the URL's query, never started by the GET."""

import datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from maintenance_tasks.models import Run, Task
from testproject.testapp.models import Seen

pytestmark = pytest.mark.django_db

APP = "testproject.testapp.maintenance"
EVERY = f"{APP}.EveryType"
URL = reverse("admin:maintenance_tasks_processor", args=[EVERY])


def login(client, *perms):
    user = User.objects.create_user("alice", is_staff=True)
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm, content_type__app_label="maintenance_tasks"))
    client.force_login(user)


@pytest.fixture
def operator(client):
    login(client, "view_task", "start_run")


def page_of(response):
    assert response.status_code == 200
    return response.context["page"]


def notes_of(response):
    return page_of(response).prefill_notes


def test_a_link_fills_in_the_form_with_typed_values(operator, client):
    query = (
        "?name=nightly&limit=25&ratio=0.25&amount=2.75&since=2025-01-01&at=2025-02-03T04:05"
        "&dry_run=true&tags=alpha,beta&ids=1,2&options=%7B%22a%22%3A%201%7D&color=green&mode=fast"
    )
    response = client.get(URL + query)
    form = page_of(response).form
    assert not form.is_bound and notes_of(response) == []
    values = {name: form[name].value() for name in form.fields}
    assert values["name"] == "nightly"
    assert values["limit"] == 25
    assert values["ratio"] == 0.25
    assert values["amount"] == Decimal("2.75")
    assert values["since"] == datetime.date(2025, 1, 1)
    assert values["at"].replace(tzinfo=None) == datetime.datetime(2025, 2, 3, 4, 5)
    assert values["dry_run"] is True
    assert values["tags"] == "alpha\nbeta"
    assert values["ids"] == "1\n2"
    assert values["options"] == '{\n  "a": 1\n}'
    assert values["color"] == "green"
    assert values["mode"] == "fast"
    html = response.content.decode()
    assert 'value="2025-01-01"' in html and 'value="25"' in html and 'value="2025-02-03T04:05"' in html
    assert '<option value="green" selected>' in html
    assert not Run.objects.exists() and not Task.objects.exists()


def test_a_false_boolean_and_untouched_defaults(operator, client):
    form = page_of(client.get(URL + "?dry_run=0&name=x")).form
    assert form["dry_run"].value() is False
    assert form["limit"].value() == 10 and form["mode"].value() == "safe"  # not in the link: the defaults


def test_a_get_never_starts_a_run(operator, client):
    response = client.get(URL + "?name=nightly&_start=Start&_count=Count")
    assert page_of(response).form["name"].value() == "nightly"
    assert not Run.objects.exists() and not Seen.objects.exists()
    assert 'id="item-count"' in response.content.decode() and page_of(response).count_requested is False


def test_bad_values_are_left_out_with_a_note_naming_them(operator, client):
    response = client.get(URL + "?limit=many&since=2025-13-45&dry_run=banana&color=purple&name=ok")
    form = page_of(response).form
    assert notes_of(response) == [
        "“limit=many” from the link was left out: Enter a whole number.",
        "“since=2025-13-45” from the link was left out: Enter a valid date.",
        "“dry_run=banana” from the link was left out: Enter true or false.",
        "“color=purple” from the link was left out: Select a valid choice. purple is not one of the available choices.",
    ]
    assert form["limit"].value() == 10 and form["since"].value() == datetime.date(2024, 1, 1)  # as without the link
    assert form["name"].value() == "ok"
    html = response.content.decode()
    assert '<ul class="messagelist" id="prefill-notes">' in html
    assert '<li class="warning">“limit=many” from the link was left out: Enter a whole number.</li>' in html
    assert not Run.objects.exists()


def test_unknown_and_repeated_names_get_one_note_each(operator, client):
    response = client.get(URL + "?region=us&param-name=x&limit=1&limit=2&p=1")
    assert notes_of(response) == [
        "“limit” is given more than once in the link: it was left out.",
        "Not parameters of this task, ignored: region, param-name.",
    ]
    assert page_of(response).form["limit"].value() == 10


def test_an_empty_value_for_a_required_parameter_is_named(operator, client):
    response = client.get(URL + "?limit=")
    assert notes_of(response) == ["“limit=” from the link was left out: This field is required."]


def test_a_prefilled_form_starts_what_it_shows(operator, client):
    form = page_of(client.get(URL + "?name=nightly&limit=25&color=green&since=2025-01-01")).form
    data = {form.add_prefix(name): form[name].value() for name in form.fields}
    data = {key: value for key, value in data.items() if value not in (None, False)}
    response = client.post(URL, {**data, "_start": "Start"})
    assert response.status_code == 302
    run = Run.objects.get()
    assert run.task.config["name"] == "nightly" and run.task.config["limit"] == 25
    assert run.task.config["color"] == "green" and run.task.config["since"] == "2025-01-01"


def test_without_the_start_permission_the_link_shows_no_form(client):
    login(client, "view_task")
    response = client.get(URL + "?name=nightly&bogus=1")
    assert page_of(response).form is None and notes_of(response) == []
    assert 'id="start-form"' not in response.content.decode()
