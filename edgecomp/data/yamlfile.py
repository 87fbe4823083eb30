"""YAML files users hand us (recipes, composition specs): a mapping, or a one-line error."""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgecompError


def read_yaml_mapping(path: Path, what: str) -> dict:
    import yaml

    if not path.is_file():
        raise EdgecompError(f"{path}: no such {what}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise EdgecompError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise EdgecompError(f"{path}: a {what} is a mapping")
    return data


def check_keys(mapping: dict, allowed, what: str) -> None:
    """Refuse a key of ``mapping`` not in ``allowed``, naming it and the allowed ones: a misspelt
    option in a recipe or spec would otherwise be ignored and its default used without a word."""
    for key in mapping:
        if key not in allowed:
            raise EdgecompError(f"{what}: unknown key '{key}' (allowed: {', '.join(sorted(allowed))})")
