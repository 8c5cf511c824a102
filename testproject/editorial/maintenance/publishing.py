"""Publishing tasks."""

from maintenance_tasks import Processor

from testproject.demo.models import Article


class UnpublishUntitled(Processor):
    """Take back articles published without a title."""

    def collection(self):
        return Article.objects.filter(published=True, title="")

    def process(self, article):
        article.published = False
        article.save(update_fields=["published"])
