"""`.env.example` lists every setting, with its default and a one-line meaning, and
nothing else: checked against `Settings`, so a new setting cannot be left out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.config import Settings

EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"
ENTRY = re.compile(r"#\s*([A-Z][A-Z0-9_]*)=(.*)")


def entries() -> dict[str, tuple[str, str]]:
    """NAME -> (default as written, the meaning on the line above)."""
    found: dict[str, tuple[str, str]] = {}
    previous = ""
    for line in EXAMPLE.read_text().splitlines():
        match = ENTRY.fullmatch(line.strip())
        if match:
            name, value = match.groups()
            assert name not in found, f".env.example lists {name} twice"
            meaning = previous.lstrip("#").strip()
            assert previous.startswith("#") and meaning and not ENTRY.fullmatch(previous), (
                f".env.example: {name} needs a one-line meaning on the line above it"
            )
            found[name] = (value, meaning)
        previous = line.strip()
    return found


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def test_every_setting_is_listed_and_nothing_else() -> None:
    listed = set(entries())
    missing = sorted(setting_names() - listed)
    extra = sorted(listed - setting_names())
    assert not missing and not extra, (
        f"settings missing from .env.example: {', '.join(missing) or 'none'}; "
        f"listed in .env.example but not settings: {', '.join(extra) or 'none'}"
    )


def test_the_defaults_written_are_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    listed = {name: value for name, (value, _) in entries().items() if name in setting_names()}
    defaults = Settings(_env_file=None).model_dump()  # type: ignore[call-arg]
    # An empty value stands for "unset": the setting's own default must be empty too.
    not_empty = [n for n, v in listed.items() if not v and defaults[n.lower()]]
    assert not not_empty, f".env.example leaves these empty, but they have defaults: {not_empty}"

    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{n}={v}\n" for n, v in listed.items() if v))
    loaded = Settings(_env_file=env_file).model_dump()  # type: ignore[call-arg]
    wrong = {
        name: (listed[name.upper()], defaults[name])
        for name in defaults
        if name.upper() in listed and loaded[name] != defaults[name]
    }
    assert not wrong, f".env.example shows other defaults than Settings (written, real): {wrong}"
