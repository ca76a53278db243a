"""Converters from public review datasets to the package's items, reviews and interactions JSONL."""

from .amazon import convert_amazon
from .clothing import convert_clothing
from .common import ConvertReport
from .goodreads import convert_goodreads
from .selection import Selection

__all__ = ["ConvertReport", "Selection", "convert_amazon", "convert_clothing", "convert_goodreads"]
