"""Reading a config file without trusting it: a size cap, UTF-8, and a YAML loader with bounds.

:func:`read_yaml` reads at most :data:`MAX_CONFIG_BYTES` and parses with :class:`ConfigLoader`, which refuses
deep nesting, alias bombs ("billion laughs") and huge integers before any value is built; every refusal is
one :class:`~llara.errors.LlaraError` naming the file (docs/reliability.md, "Config files: bounded reading").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llara.errors import LlaraError

#: the largest config file read, in bytes: configs are a few KB, so a larger file is not one
MAX_CONFIG_BYTES = 1 << 20
#: the most YAML nodes (mappings, lists, keys and values) a config may hold once every alias (``*name``)
#: is expanded: a few hundred bytes of nested aliases would otherwise expand to billions ("billion laughs")
MAX_CONFIG_NODES = 100_000
#: the deepest nesting of mappings and lists a config may have (the sections are 3 levels deep)
MAX_CONFIG_DEPTH = 100
#: the longest integer a config may spell, in characters (Python refuses to read ints of over 4300 digits,
#: and a YAML 1.1 base-60 integer like ``1:2:3`` costs time quadratic in its length)
MAX_INT_CHARS = 100


def _too_many_nodes() -> str:
    return (
        f"holds more than {MAX_CONFIG_NODES:,} values (mappings, lists, keys and values, with its aliases *name "
        "expanded), the limit for a config"
    )


class _RefusedYaml(yaml.YAMLError):
    """A YAML document the config loader refuses to build (too deep, too large once expanded)."""


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with bounds: the document is refused before any value is built when it nests
    deeper than :data:`MAX_CONFIG_DEPTH`, holds more than :data:`MAX_CONFIG_NODES` nodes with its aliases
    expanded (or an alias inside its own anchor), or spells an integer longer than :data:`MAX_INT_CHARS`."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._composed = 0

    def fetch_flow_collection_start(self, token_class: type[yaml.Token]) -> None:
        """Refuse ``[`` or ``{`` past the depth limit as soon as it is scanned: the scanner reads up to 1024
        characters ahead of the composer, at a cost quadratic in the number of open brackets."""
        if self.flow_level >= MAX_CONFIG_DEPTH:
            raise _RefusedYaml(f"nests deeper than {MAX_CONFIG_DEPTH} levels (line {self.line + 1})")
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """Compose one node, counting how deep the nesting is (the composer recurses once per level)."""
        self._depth += 1
        self._composed += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise _RefusedYaml(f"nests deeper than {MAX_CONFIG_DEPTH} levels (line {line})")
            if self._composed > MAX_CONFIG_NODES:  # stop early: the expanded count is at least this
                raise _RefusedYaml(_too_many_nodes())
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        """Compose the document and check its expanded size before anything is constructed."""
        node = super().compose_document()
        if node is not None:
            _expanded_size(node, {}, set())
        return node

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """An integer, refused when its text is longer than :data:`MAX_INT_CHARS`."""
        if len(node.value) > MAX_INT_CHARS:
            line = node.start_mark.line + 1
            raise _RefusedYaml(f"spells an integer of more than {MAX_INT_CHARS} characters (line {line})")
        return super().construct_yaml_int(node)


ConfigLoader.add_constructor("tag:yaml.org,2002:int", ConfigLoader.construct_yaml_int)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """The number of nodes under ``node`` (itself included) with every alias expanded, computed once per
    node so shared (aliased) nodes cost nothing; refuses more than :data:`MAX_CONFIG_NODES` and cycles."""
    key = id(node)  # the node graph keeps every node alive meanwhile, so ids are stable
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise _RefusedYaml(f"uses an alias inside its own anchor (line {node.start_mark.line + 1})")
    open_nodes.add(key)
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        children = []
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_nodes)
        if total > MAX_CONFIG_NODES:
            raise _RefusedYaml(_too_many_nodes())
    open_nodes.discard(key)
    sizes[key] = total
    return total


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (PyYAML's own message spans several lines)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = "; ".join(part for part in (exc.context, exc.problem) if part)
        if mark is not None:
            return f"{what} (line {mark.line + 1}, column {mark.column + 1})"
        return what
    return " ".join(str(exc).split())


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a one-line error for a missing, malformed or hostile file.

    The file must be UTF-8 and at most :data:`MAX_CONFIG_BYTES`; it is parsed by :class:`ConfigLoader`, so
    deep nesting and alias bombs are refused before any value is built.
    """
    path = Path(path)
    if not path.is_file():
        raise LlaraError(f"config file {path} does not exist")
    with path.open("rb") as stream:
        raw = stream.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise LlaraError(
            f"config file {path} is larger than {MAX_CONFIG_BYTES // 2**20} MiB, the limit for a config "
            "(configs are a few KB): is it the right file?"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LlaraError(
            f"config file {path} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from exc
    try:
        data = yaml.load(text, Loader=ConfigLoader) or {}
    except _RefusedYaml as exc:
        raise LlaraError(f"config file {path} {exc}") from exc
    except yaml.YAMLError as exc:
        raise LlaraError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}") from exc
    except ValueError as exc:  # a value PyYAML matched but cannot build, e.g. the date 2001-13-01
        raise LlaraError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise LlaraError(f"config file {path} must hold a mapping of sections, not {type(data).__name__}")
    return data
