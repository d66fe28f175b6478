"""The one escaping helper for terminal output.

rich reads ``[...]`` in printed strings as markup: a node, op or file name such as
``conv[/]1`` would crash the printer (``MarkupError``) and ``out[red]`` would silently lose
text. Every string that comes from a model, a path or a user goes through :func:`esc` before
it is printed or put into a table; only irpass's own literal styling stays markup.
"""

from __future__ import annotations

__all__ = ["esc"]


def esc(value: object) -> str:
    r"""``value`` as text that rich prints verbatim (markup characters escaped).

    rich takes the one backslash right before any ``[`` as an escape (``\[`` prints ``[``,
    ``\\[`` prints ``\[``), not only before tag-like text as ``rich.markup.escape``
    assumes, so every ``[`` gets its own backslash; other backslashes print as they are.
    """
    return str(value).replace("[", "\\[")
