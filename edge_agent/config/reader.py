"""A configuration file's YAML, read once and within bounds: the data, the line of every key path, and the
duplicate keys. A config is a few hundred lines; anything far beyond that (an alias bomb, nesting a thousand
deep, a huge file) is refused early, before it costs seconds or gigabytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from edge_agent.paths import ConfigError

MAX_BYTES = 4 * 1024 * 1024
MAX_ALIASES = 100
MAX_NODES = 100_000  # values after aliases are expanded; the biggest example config has under 500
MAX_DEPTH = 64
MERGE_TAG = "tag:yaml.org,2002:merge"

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class YamlProblem:
    """Something wrong at a place in the file: 1-based line (None: the whole file) and key path."""

    line: int | None
    path: KeyPath
    reason: str


class YamlRefused(ConfigError):
    """The text is not YAML, or is beyond what a config may be; ``problem`` says where and why."""

    def __init__(self, problem: YamlProblem) -> None:
        super().__init__("<yaml>", [problem.reason])
        self.problem = problem

    def __str__(self) -> str:
        return self.problem.reason


@dataclass(frozen=True, slots=True)
class YamlDocument:
    data: Any
    lines: dict[KeyPath, int]
    duplicates: tuple[YamlProblem, ...]


class _BoundedComposer(Composer):
    """PyYAML's composer, counting as it goes: nesting depth, aliases, and the values the tree expands to
    (an alias counts as everything it stands for), and noting each key path's line and repeated keys."""

    def __init__(self) -> None:
        super().__init__()
        self.path: list[str | int] = []
        self.lines: dict[KeyPath, int] = {}
        self.duplicates: list[YamlProblem] = []
        self.aliases = 0
        self.composed = 0
        self.expanded: dict[int, int] = {}  # id(node) -> values it stands for; absent while being composed

    def _refuse(self, mark: yaml.Mark, reason: str) -> NoReturn:
        raise YamlRefused(YamlProblem(mark.line + 1, tuple(self.path), reason))

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        is_key = isinstance(parent, MappingNode) and index is None  # a key's line is noted with its path
        if self.check_event(AliasEvent):
            event = self.get_event()
            if not is_key:
                self.lines[tuple(self.path)] = event.start_mark.line + 1
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                self._refuse(event.start_mark, f"more than {MAX_ALIASES} aliases (*name); a config needs few, if any")
            target = self.anchors.get(event.anchor)
            if target is None:
                raise ComposerError(None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
            if id(target) not in self.expanded:
                self._refuse(event.start_mark, f"alias *{event.anchor} is used inside its own anchor (a loop)")
            return target
        event = self.peek_event()
        if not is_key:
            self.lines[tuple(self.path)] = event.start_mark.line + 1
        self.composed += 1
        if self.composed > MAX_NODES:
            self._refuse(event.start_mark, f"more than {MAX_NODES:,} values; a config needs far fewer")
        if len(self.path) >= MAX_DEPTH:
            del self.path[8:]  # the place where it starts is enough
            self._refuse(event.start_mark, f"nested deeper than {MAX_DEPTH} levels; a config needs fewer than 10")
        if event.anchor is not None and event.anchor in self.anchors:
            raise ComposerError(f"found duplicate anchor {event.anchor!r}; first occurrence",
                                self.anchors[event.anchor].start_mark, "second occurrence", event.start_mark)
        self.descend_resolver(parent, index)
        if self.check_event(ScalarEvent):
            node: Node = self.compose_scalar_node(event.anchor)
            self.expanded[id(node)] = 1
        elif self.check_event(SequenceStartEvent):
            node = self.compose_sequence_node(event.anchor)
        else:
            node = self.compose_mapping_node(event.anchor)
        self.ascend_resolver()
        return node

    def _check_size(self, node: Node, size: int) -> None:
        if size > MAX_NODES:
            self._refuse(node.start_mark, f"expands to more than {MAX_NODES:,} values (aliases included); "
                         "a config needs far fewer")

    def compose_sequence_node(self, anchor: str | None) -> SequenceNode:
        start = self.get_event()
        node = SequenceNode(self.resolve(SequenceNode, None, start.implicit), [], start.start_mark, None,
                            flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        size = 1
        while not self.check_event(SequenceEndEvent):
            self.path.append(len(node.value))
            item = self.compose_node(node, len(node.value))
            self.path.pop()
            node.value.append(item)
            size += self.expanded[id(item)]
            self._check_size(node, size)
        node.end_mark = self.get_event().end_mark
        self.expanded[id(node)] = size  # complete: aliases of it may follow now
        return node

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        start = self.get_event()
        node = MappingNode(self.resolve(MappingNode, None, start.implicit), [], start.start_mark, None,
                           flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        size = 1
        seen: dict[tuple[str, str], int] = {}  # (tag, value) of each plain key -> its line
        while not self.check_event(MappingEndEvent):
            key = self.compose_node(node, None)
            name = str(key.value)
            line = key.start_mark.line + 1
            self.path.append(name)
            if isinstance(key, ScalarNode) and key.tag != MERGE_TAG:
                first = seen.get((key.tag, key.value))
                if first is None:
                    seen[(key.tag, key.value)] = line
                else:
                    self.duplicates.append(YamlProblem(line, tuple(self.path), f"key {name!r} is given twice "
                                                       f"(lines {first} and {line}); the second would silently "
                                                       "replace the first: keep one"))
            self.lines[tuple(self.path)] = line
            value = self.compose_node(node, key)
            self.path.pop()
            node.value.append((key, value))
            size += self.expanded[id(key)] + self.expanded[id(value)]
            self._check_size(node, size)
        node.end_mark = self.get_event().end_mark
        self.expanded[id(node)] = size  # complete: aliases of it may follow now
        return node


class _SafeConstructor(SafeConstructor):
    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. the date 2026-02-30
            raise ConstructorError(None, None, f"cannot read {node.value!r} as {node.tag}: {exc}",
                                   node.start_mark) from None


if yaml.__with_libyaml__:  # libyaml scans and parses about ten times faster; the composer stays ours
    from yaml._yaml import CParser

    class _Loader(_BoundedComposer, CParser, _SafeConstructor, Resolver):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _BoundedComposer.__init__(self)
            _SafeConstructor.__init__(self)
            Resolver.__init__(self)
else:  # pragma: no cover - PyYAML without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Loader(_BoundedComposer, Reader, Scanner, Parser, _SafeConstructor, Resolver):  # type: ignore[no-redef]
        def __init__(self, text: str) -> None:
            Reader.__init__(self, text)
            Scanner.__init__(self)
            Parser.__init__(self)
            _BoundedComposer.__init__(self)
            _SafeConstructor.__init__(self)
            Resolver.__init__(self)


def read_yaml(text: str) -> YamlDocument:
    """Compose ``text`` once, within the bounds above, and build its data from that one node tree.
    Raises YamlRefused for text that is not YAML or is beyond a config's size."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise YamlRefused(YamlProblem(None, (), f"{size:,} bytes is more than a config may be "
                                      f"({MAX_BYTES:,}); is this the right file?"))
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise YamlRefused(YamlProblem(line, (), f"not valid YAML: {getattr(exc, 'problem', None) or exc}")) from exc
    finally:
        loader.dispose()
    return YamlDocument(data, loader.lines, tuple(loader.duplicates))
