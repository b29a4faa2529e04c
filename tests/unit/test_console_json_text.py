"""The console's policy history shows values as JSON people read: Unicode as itself (``tojson``
wrote ``["\\u00fcn\\u00ef"]``), and still HTML-escaped."""

from __future__ import annotations

from services.api.console.web import templates


def test_json_text_keeps_unicode_and_the_page_escapes_it() -> None:
    page = templates.env.from_string("{{ value|json_text }}").render(value=["ünï😀", "<script>"])
    assert page == "[&#34;ünï😀&#34;, &#34;&lt;script&gt;&#34;]"
