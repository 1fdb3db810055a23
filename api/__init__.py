"""Item Channels: authenticated real-time channels per item, on FastAPI."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    # The one place the version is written is pyproject.toml; this reads it back.
    __version__ = version("item-channels")
except PackageNotFoundError:  # a checkout on sys.path without `pip install`
    __version__ = "0+unknown"
