"""What messages share: values quoted short, several lines as one."""

from __future__ import annotations

from typing import Any

__all__ = ["nbytes", "one_line", "short"]


def short(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to about ``limit`` characters, so that a message quoting a value
    stays one short sentence whatever the value (a 50 MB string, an int of 400 digits).

    Example:
        >>> short("x" * 100, 12)
        "'xxxxxxxx..."
    """
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int beyond repr's digits, a nested structure
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(message: str, limit: int = 280) -> str:
    """``message`` as one line of at most ``limit`` characters: several lines (a graph's list
    of problems, their ``"- "`` bullets dropped) joined by ``"; "``; a longer one cut in the
    middle with ``"..."``, so that its start and its end (often the reason) both stay.

    Example:
        >>> one_line("problems:\\n- a\\n- b")
        'problems:; a; b'
        >>> one_line("cannot write " + "a" * 50 + ".png: File name too long", 40)
        'cannot write aaaaaa...File name too long'
    """
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    lines = [line[2:] if line.startswith("- ") else line for line in lines]
    text = "; ".join(lines) if lines else message
    if len(text) <= limit:
        return text
    tail = (limit - 3) // 2
    return text[: limit - 3 - tail] + "..." + text[len(text) - tail :]


def nbytes(n: float) -> str:
    """A number of bytes for a message, in the unit that shows it (``B``, ``KiB`` ... ``PiB``).

    Example:
        >>> nbytes(1536), nbytes(3 * 2**30), nbytes(100)
        ('1.5 KiB', '3.0 GiB', '100 B')
    """
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:,.1f} PiB"
