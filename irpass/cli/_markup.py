"""The one escaping helper for terminal output.

rich reads ``[...]`` in printed strings as markup: a node, op or file name such as
``conv[/]1`` would crash the printer (``MarkupError``) and ``out[red]`` would silently lose
text. Every string that comes from a model, a path or a user goes through :func:`esc` before
it is printed or put into a table; only irpass's own literal styling stays markup.
"""

from __future__ import annotations

from rich.markup import escape

__all__ = ["esc"]


def esc(value: object) -> str:
    """``value`` as text that rich prints verbatim (markup characters escaped).

    rich's ``escape`` doubles a trailing backslash so that a tag written right after it stays
    a tag; irpass never writes a tag directly after an escaped value, and a path ending in
    a backslash must print as it is.
    """
    text = str(value)
    escaped = escape(text)
    if text.endswith("\\") and escaped.endswith("\\\\") and not text.endswith("\\\\"):
        escaped = escaped[:-1]
    return escaped
