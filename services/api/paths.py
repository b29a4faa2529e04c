"""The path parameter type of ids in routes: ``{transaction_id:event_id}``.

The transaction contract takes any printable id of 1 to 64 characters, "/" included, so an id
is not one path segment: a link carries its "/" percent-encoded, which the server decodes
before routing. Starlette's ``path`` convertor would do but for one thing: its ``.*`` stops at a
newline, so an id with a control character found no route (404) instead of its 422.
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor


class EventIdConvertor(Convertor[str]):
    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("event_id", EventIdConvertor())
