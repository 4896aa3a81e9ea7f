"""Pages of a list without counting its rows.

Django's Paginator counts every matching row (`SELECT COUNT(*)`) to number the last page,
which at millions of messages costs more than the page itself. A dashboard list only needs
"newer" and "older": each page reads one row past its end to learn whether an older page
exists, and nothing else. The paginator's `count` still answers if something asks for it
(it then counts, as Django's does); the pages' templates never ask.
"""
from __future__ import annotations

from typing import Any

from django.core.paginator import InvalidPage, Page, Paginator


class WindowPaginator(Paginator):
    """A Paginator whose pages know whether a next one exists without a row count."""

    def validate_number(self, number: Any) -> int:
        """Return the page number as a positive int (there is no last page to check)."""
        try:
            value = int(number)
        except (TypeError, ValueError):
            raise InvalidPage("That page number is not an integer") from None
        if value < 1:
            raise InvalidPage("That page number is less than 1")
        return value

    def page(self, number: Any) -> Page:
        """Return the page, reading one row more than it shows."""
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        rows = list(self.object_list[bottom:bottom + self.per_page + 1])
        return WindowPage(rows[:self.per_page], number, self,
                          more=len(rows) > self.per_page)

    def get_page(self, number: Any) -> Page:
        """Return the page, or the first one for a number that is not a page number."""
        try:
            return self.page(number)
        except InvalidPage:
            return self.page(1)


class WindowPage(Page):
    """A page that was told whether another one follows."""

    def __init__(self, object_list: list[Any], number: int, paginator: Paginator, *,
                 more: bool) -> None:
        super().__init__(object_list, number, paginator)
        self.more = more

    def has_next(self) -> bool:
        """Return whether an older page exists (the row past this one's end was there)."""
        return self.more

    def next_page_number(self) -> int:
        """Return the next page's number."""
        return self.number + 1
