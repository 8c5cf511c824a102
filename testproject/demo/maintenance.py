"""Demo processors: backfills over the Article table."""

from django.core.exceptions import ValidationError
from django.db.models import Value
from django.db.models.functions import Length, Lower, Replace
from django.utils.text import slugify

from maintenance_tasks import Processor
from maintenance_tasks.models import Run
from maintenance_tasks.status import RunStatus

from .models import Article, LegacyArticle


class BackfillSlugs(Processor):
    """Fill in the slug of every article that has none, from its title."""

    batch_size = 500
    redo: bool = False  # also articles that have a slug

    def collection(self):
        return Article.objects.all() if self.redo else Article.objects.filter(slug="")

    def process(self, article):
        article.slug = slugify(article.title)[:200] + f"-{article.pk}"
        article.save(update_fields=["slug"])


class CountTitleWords(Processor):
    """Store each article's title word count, a whole batch per UPDATE statement."""

    batch_size = 2000  # at most 2000 rows per UPDATE
    batch_time = 0.25  # transactions of about a quarter of a second on the live table
    min_batch_size = 100  # a slow spell shrinks batches to 100 rows at the smallest
    only_missing: bool = True

    def collection(self):
        articles = Article.objects.all()
        return articles.filter(word_count__isnull=True) if self.only_missing else articles

    def process_batch(self, articles):
        spaces = Length("title") - Length(Replace("title", Value(" "), Value("")))
        articles.update(word_count=spaces + 1)


def import_running():
    """Return why a backfill of articles should wait while an ImportArticles run adds articles (a throttle condition).

    A condition is any callable: this one reads the runs table, so it holds on every database.
    """
    if Run.objects.filter(task__processor=f"{__name__}.ImportArticles", status=RunStatus.RUNNING).exists():
        return "an import of articles is running"
    return None


class RecountTitleWords(CountTitleWords):
    """Count every article's title words again, waiting while an import of articles runs (a throttled processor)."""

    only_missing: bool = False
    throttle_on = [import_running]
    throttle_backoff_max = 10.0  # look again at most every 10 s while it waits
    sleep_ratio = 0.5  # after each commit, a sleep half as long: the site keeps the database a third of the time


class PublishArticles(Processor):
    """Publish articles whose title starts with the given prefix (case-insensitive)."""

    prefix: str

    def collection(self):
        articles = Article.objects.annotate(lower_title=Lower("title")).filter(
            published=False, lower_title__startswith=self.prefix.lower()
        )
        return articles

    def process_batch(self, articles):
        articles.update(published=True)

    def count(self):
        return Article.objects.filter(published=False, title__istartswith=self.prefix).count()


class PublishValidArticles(Processor):
    """Publish every unpublished article that passes its model validation; skip and list the others."""

    skip_on = (ValidationError,)  # an invalid article is recorded on the run page, and the run goes on
    max_skipped = 1000

    def collection(self):
        return Article.objects.filter(published=False)

    def process(self, article):
        article.full_clean()
        article.published = True
        article.save(update_fields=["published"])


class ImportArticles(Processor):
    """Create an article per row of a CSV file with a title column (try demo/articles.csv)."""

    csv_collection = True
    csv_headers = ("title",)
    batch_size = 500

    def process_batch(self, rows):
        Article.objects.bulk_create(
            Article(title=row["title"], published=row.get("published", "").lower() == "yes") for row in rows
        )


class BackfillLegacySlugs(Processor):
    """Fill in the slug of every old blog article, on the legacy database (LEGACY_DATABASE_URL) when there is one.

    Its router (testproject/routers.py) sends LegacyArticle there, so each batch and its checkpoint
    commit there; without the legacy database, the articles are on the default one.
    """

    batch_size = 500

    def collection(self):
        return LegacyArticle.objects.filter(slug="")

    def process(self, article):
        article.slug = slugify(article.title)[:200] + f"-{article.pk}"
        article.save(update_fields=["slug"])
