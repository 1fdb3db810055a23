"""The contract's name patterns, in one place."""

from __future__ import annotations

import re

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,64}$"
ITEM_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"

USERNAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,64}")
ITEM_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
