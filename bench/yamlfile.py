"""YAML for configs and prompt files: safe, size-checked, UTF-8, no duplicate keys, shallow.

`yaml.safe_load` lets the last of two equal keys silently win (a config that says `steps: 4`
and, further down, `steps: 60` runs 60 steps without a word), and it recurses once per level of
nesting, so a small file of brackets ends in a RecursionError. This loader refuses both with
one line naming the file, the key and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

from bench.errors import ConfigError
from bench.limits import MAX_YAML_DEPTH
from bench.textfile import read_text_bounded

_MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that raises on duplicate mapping keys and on nesting deeper than the limit."""

    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise ConstructorError(
                    None,
                    None,
                    f"nested more than {MAX_YAML_DEPTH} levels deep (docs/limits.md)",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # `<<: *base` merges; keys written after it override on purpose
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
            if first is not None:
                raise ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {first + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml_file(path: Path, limit: int, what: str) -> Any:
    """Parse `path` with `StrictLoader`; ConfigError naming the file and line on any problem."""
    text = read_text_bounded(path, limit, what, ConfigError)
    try:
        return yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        detail = f"{context}: {problem}" if context and "duplicate" not in problem else problem
        raise ConfigError(f"{path}:{where} not valid YAML ({detail})") from exc


def local_path(path: str, config_dir: Path) -> Path:
    """A path a config names: absolute as it is, else as found from the working folder, else
    beside the config."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    return p if p.exists() else config_dir / p
