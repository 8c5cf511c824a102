"""A module that is not ``maintenance.py``: its processors must never be resolvable."""

from maintenance_tasks import Processor


class Hidden(Processor):
    def process(self, item=None):
        raise AssertionError("never run")
