"""The one rule for names that become folder or file names (recipe, device profile, variant,
bundle artifact): `[A-Za-z0-9._-]`, 1-64 characters, not starting with `.` or `-`.

Why: recipes and profiles are files strangers share, and their names end up in paths
(`runs/<recipe>/<device>/export/<variant>/`). A name like `/some/dir` or `../../x` would send
a run folder, and its cleanup, outside `--out`; a leading `-` reads as an option to tools; a
leading `.` hides the folder or means `..`.
"""

from __future__ import annotations

import re

NAME_RULE = "1-64 characters from A-Z a-z 0-9 . _ -, not starting with '.' or '-'"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


def is_safe_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_name(name: object, what: str = "name") -> str:
    """`name` if it follows the rule, else ValueError saying what is allowed (pydantic
    validators turn it into `file: key: ...`; other callers wrap it in their error type)."""
    if not is_safe_name(name):
        raise ValueError(f"{what} {name!r} cannot be used as a folder name (allowed: {NAME_RULE})")
    return str(name)
