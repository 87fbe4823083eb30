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
