"""The demo's processors in a package (``testproject/editorial/maintenance/``), tested with run_processor.

The README's "Testing your processors" shows these two styles: a pytest-django test with the
``db`` fixture, and a Django ``TestCase``.
"""

from django.test import TestCase
from django.urls import reverse

from maintenance_tasks.models import Run
from maintenance_tasks.testing import run_processor
from testproject.demo.models import Article
from testproject.editorial.maintenance.publishing import UnpublishUntitled
from testproject.editorial.maintenance.titles import TrimTitles


def test_trim_titles(db):
    padded = Article.objects.create(title="  Hello world ")
    clean = Article.objects.create(title="Already clean")

    run = run_processor(TrimTitles)

    assert run.status == "succeeded"
    assert run.tick_count == 1
    padded.refresh_from_db()
    clean.refresh_from_db()
    assert (padded.title, clean.title) == ("Hello world", "Already clean")


class UnpublishUntitledTests(TestCase):
    def test_unpublishes_only_untitled_articles(self):
        untitled = Article.objects.create(title="", published=True)
        titled = Article.objects.create(title="News", published=True)

        run = run_processor(UnpublishUntitled)

        self.assertEqual(run.status, "succeeded")
        untitled.refresh_from_db()
        titled.refresh_from_db()
        self.assertEqual((untitled.published, titled.published), (False, True))


def test_the_admin_lists_shows_and_starts_a_processor_of_a_package(admin_client, django_capture_on_commit_callbacks):
    path = "testproject.editorial.maintenance.titles.TrimTitles"
    Article.objects.create(title=" Padded")
    assert path in admin_client.get(reverse("admin:maintenance_tasks_task_changelist")).content.decode()
    page = admin_client.get(reverse("admin:maintenance_tasks_processor", args=[path]))
    assert "Remove the spaces around article titles" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("admin:maintenance_tasks_processor", args=[path]), {})
    run = Run.objects.get(task__processor=path)
    assert run.status == "succeeded"
    assert Article.objects.get().title == "Padded"
