from django.db import models


class Article(models.Model):
    """A blog article: the demo table that the demo processors backfill."""

    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=220, blank=True, db_index=False)
    word_count = models.IntegerField(null=True, blank=True)
    published = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.title


class LegacyArticle(models.Model):
    """An article of the old blog, on the "legacy" database when LEGACY_DATABASE_URL is set."""

    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=220, blank=True, db_index=False)

    def __str__(self) -> str:
        return self.title
