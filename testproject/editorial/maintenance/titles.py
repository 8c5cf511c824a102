"""Clean-ups of article titles."""

from django.db.models import Q
from django.db.models.functions import Trim

from maintenance_tasks import Processor

from testproject.demo.models import Article


class TrimTitles(Processor):
    """Remove the spaces around article titles, a whole batch per UPDATE statement."""

    batch_size = 1000

    def collection(self):
        return Article.objects.filter(Q(title__startswith=" ") | Q(title__endswith=" "))

    def process_batch(self, articles):
        articles.update(title=Trim("title"))
