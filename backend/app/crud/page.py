"""What every offset-paged list query returns."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows, and how many rows the whole filtered list holds."""

    rows: Sequence[T]
    count: int
