"""Path templates learned from traffic: ``/users/8123`` -> ``/users/{user_id}``.

Why: the inventory counts calls per endpoint, and without a spec (or for the paths a spec
does not know: shadow endpoints) the endpoint has to be inferred from the paths alone. The
learner is a trie of path segments, fed off the hot path, that decides per node which
children are real endpoints (literals) and which are values (one ``{param}`` child):

- A segment that *is* an id by its shape (``classify_segment``: a number, UUID, hex,
  base64-like token, ISO date, email; or longer than ``MAX_LITERAL``) goes straight to the
  param child and is never stored. A year-like number (``/reports/2024``) is the one
  exception: it stays literal while it is the only year seen under its parent, and becomes
  the param once a second year shows up (or once the param already holds numbers).
- A word-like segment (``me``, ``search``, ``v2``, ``api``, ``how-to-foo-bar``) is stored as
  a literal child. Its siblings collapse into the param when they look alike (3/4 of them
  of one coarse shape, ``_shape``) and either are many (``max_children``) or statistically
  look like values: at least ``min_samples`` distinct siblings with 2/3 of the calls so far
  going to siblings seen once (a real endpoint repeats; a value mostly does not). Early in
  the traffic of a set of K values this holds as soon as K is about 3 x ``min_samples``;
  a smaller set of words is kept literal (without a spec, 40 gallery slugs called often
  look exactly like 40 endpoints). Frequent siblings (``min_samples // 2`` calls and a
  tenth of the node's traffic: ``me``) stay literal, and a word that shows up only after
  the collapse is promoted back to a literal through a few candidate counters once the
  lower bound of its share (``count - 2 sqrt(count)``) reaches a tenth. So a value that
  takes more than a tenth of its siblings' calls is, by design, told apart from them.
- Memory is bounded: at most ``max_nodes`` nodes, ``max_children`` literal children per
  node, ``MAX_DEPTH`` segments per path. A node whose children pass the cap without looking
  like values stops taking new ones: unseen children are counted in its overflow bucket,
  rendered ``/prefix/{...}``, never stored one by one. So is every call that would need a
  node once the learner is full.

Params are named after their literal parent, singularised simply (``users`` ->
``{user_id}``, ``categories`` -> ``{category_id}``); after a param or at the root, ``{id}``;
a repeated name in one template gets a suffix (``{id}``, ``{id2}``).

The state is plain data (``to_dict``/``from_dict``, JSON-able) so that a store can keep it,
and learners merge (``merge``), so that several gateways feed one inventory.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OVERFLOW", "Template", "TemplateLearner", "classify_segment"]

OVERFLOW = "{...}"  # the bucket of unseen children counted, not stored
MAX_DEPTH = 32  # segments per path; deeper ones land in the overflow bucket
MAX_LITERAL = 64  # a word-like segment longer than this is a value (a slug, a token)
MAX_METHODS = 16  # distinct methods counted per template; others count as "OTHER"
CANDIDATES = 8  # words watched per collapsed node, for promotion back to a literal
PRUNE_EVERY = 64  # candidate inflows between two prunes of the candidates
FREQUENT_SHARE = 10  # a literal among values needs 1/10 of its node's traffic
_FORMAT = 1

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-f]+|[0-9A-F]+")
_DIGIT = re.compile(r"\d")
_DATE = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[Tt ]\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d\d:?\d\d)?)?"
)
_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$&'*+=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
_TOKEN = re.compile(r"[A-Za-z0-9_.~+-]+={0,2}")
_TOKEN_PARTS = re.compile(r"[-_.~+=]+")
_IDENT = re.compile(r"[^a-z0-9]+")


def classify_segment(segment: str) -> str | None:
    """The kind of id a path segment is by its shape alone, or None for a word-like literal.

    ``"int"`` (ASCII digits), ``"uuid"`` (any version, either case), ``"hex"`` (8+ hex
    digits in one case with a digit in them, or 16+), ``"base64"`` (16+ token characters
    where a part mixes letters and digits: ``pi_3MtwBwLkdIwHu7ix28a3tqPa``, not
    ``iphone-15-pro-max-case``), ``"date"`` (ISO 8601 date, optionally with a time),
    ``"email"`` (also with ``@`` percent-encoded). Cheap checks come first: this runs for
    every segment the learner has not stored.
    """
    n = len(segment)
    if n == 0:
        return None
    if segment.isdigit() and segment.isascii():
        return "int"
    if n == 36 and _UUID.fullmatch(segment):
        return "uuid"
    if "@" in segment or "%40" in segment:
        return "email" if _EMAIL.fullmatch(segment.replace("%40", "@")) else None
    if n >= 10 and segment[4] == "-" and _DATE.fullmatch(segment):
        return "date"
    if n >= 8 and _HEX.fullmatch(segment) and (n >= 16 or _DIGIT.search(segment)):
        return "hex"
    if n >= 16 and _TOKEN.fullmatch(segment):
        for part in _TOKEN_PARTS.split(segment):
            if part and not part.isalpha() and not part.isdigit():
                return "base64"
    return None


def _is_year(segment: str) -> bool:
    """A number that is more likely a year (or a version of the API by year) than an id."""
    return len(segment) == 4 and segment.isdigit() and "1900" <= segment <= "2099"


def _shape(segment: str) -> int:
    """A coarse shape for "do these siblings look alike": letter case, other punctuation.

    Digits, ``-`` and ``_`` are ignored, so ``how-to-foo``, ``top-10-tips`` and ``python``
    look alike, while ``.env``, ``admin.php`` and ``wp-admin`` (a scanner's list) do not.
    """
    lower = segment != segment.upper()
    upper = segment != segment.lower()
    plain = segment.replace("-", "").replace("_", "")
    other = bool(plain) and not plain.isalnum()
    return lower + 2 * upper + 4 * other


def singular(word: str) -> str:
    """A simple English singular, enough for resource names: users -> user,
    categories -> category, addresses -> address, boxes -> box; people stays people."""
    w = word
    if len(w) > 3 and w.endswith("ies"):
        return w[:-3] + "y"
    if w.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return w[:-2]
    if w.endswith(("ss", "us", "is")) or len(w) < 3:
        return w
    if w.endswith("s"):
        return w[:-1]
    return w


def _param_name(parent: str | None) -> str:
    """``{user_id}`` after ``users``; ``{id}`` at the root, after a param or a non-word."""
    if not parent:
        return "id"
    base = _IDENT.sub("_", singular(parent.lower())).strip("_")
    if not base or base[0].isdigit():
        return "id"
    return base + "_id"


@dataclass
class Template:
    """One learned endpoint: its template, the calls by method, and its param names."""

    template: str
    methods: dict[str, int] = field(default_factory=dict)
    count: int = 0
    params: list[str] = field(default_factory=list)


class _Node:
    """One trie position. ``n`` counts every call through it: ``end`` (calls ending here)
    + ``over`` (calls counted in the overflow bucket) + the children's ``n``."""

    __slots__ = ("cand", "collapsed", "end", "full", "kinds", "lits", "methods", "n", "over",
                 "over_methods", "param", "shape", "shapes", "win")

    def __init__(self, shape: int = 0) -> None:
        self.n = 0
        self.end = 0
        self.methods: dict[str, int] | None = None
        self.over = 0
        self.over_methods: dict[str, int] | None = None
        self.lits: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.kinds: set[str] | None = None  # on a param: the id kinds it took
        self.collapsed = False  # word-like siblings are values: unseen words go to param
        self.full = False  # max_children literals, not values: unseen ones overflow
        self.cand: dict[str, list[int]] | None = None  # word -> [count, inflow when seen]
        self.win = 0  # word-like inflows into the param since the node collapsed
        self.shape = shape  # this node's segment's shape (for its parent's look-alike test)
        self.shapes: dict[int, int] = {}  # literal children by shape


def _add_counts(into: dict[str, int] | None, more: dict[str, int] | None) -> dict[str, int] | None:
    if not more:
        return into
    if into is None:
        into = {}
    for method, count in more.items():
        if method not in into and len(into) >= MAX_METHODS:
            method = "OTHER"
        into[method] = into.get(method, 0) + count
    return into


def _segments(path: str) -> list[str]:
    """``/a/b`` -> ``["a", "b"]``; ``/`` -> ``[]``; a query, if any, is cut off unseen."""
    if "?" in path:
        path = path[: path.index("?")]
    if path == "/" or not path:
        return []
    return path[1:].split("/") if path[0] == "/" else path.split("/")


class TemplateLearner:
    """Learns path templates from observed calls, in bounded memory; mergeable state."""

    def __init__(self, *, max_nodes: int = 10_000, max_children: int = 200,
                 min_samples: int = 20) -> None:
        if max_nodes < 2 or max_children < 2 or min_samples < 2:
            raise ValueError("max_nodes, max_children and min_samples must be at least 2")
        self.max_nodes = max_nodes
        self.max_children = max_children
        self.min_samples = min_samples
        self._min_frequent = max(2, min_samples // 2)
        self._root = _Node()
        self._nodes = 1

    # -- feeding ---------------------------------------------------------------------------

    def observe(self, method: str, path: str) -> None:
        """Count one call. Cheap on the common case (every segment a stored literal or an
        id by shape, one dict lookup each); the structural work happens only when a node
        gains a child."""
        node = self._root
        node.n += 1
        segments = _segments(path)
        deep = len(segments) > MAX_DEPTH
        if deep:
            segments = segments[:MAX_DEPTH]
        for segment in segments:
            child = node.lits.get(segment)
            if child is None:
                child = self._descend(node, segment)
                if child is None:
                    self._count_over(node, method)
                    return
            child.n += 1
            node = child
        if deep:
            self._count_over(node, method)
            return
        node.end += 1
        methods = node.methods
        if methods is None:
            node.methods = methods = {}
        elif method not in methods and len(methods) >= MAX_METHODS:
            method = "OTHER"
        methods[method] = methods.get(method, 0) + 1

    def _count_over(self, node: _Node, method: str) -> None:
        node.over += 1
        node.over_methods = _add_counts(node.over_methods, {method: 1})

    def _descend(self, node: _Node, segment: str) -> _Node | None:
        """The child an unstored segment goes to (creating it), or None: overflow."""
        kind = classify_segment(segment) if len(segment) <= MAX_LITERAL else "long"
        if kind is not None and not (kind == "int" and _is_year(segment)
                                     and not _has_numbers(node.param)):
            return self._param(node, kind)
        if node.collapsed:
            return self._candidate(node, segment) or self._param(node, None)
        if node.full or self._nodes >= self.max_nodes:
            return None
        child = _Node(_shape(segment))
        self._nodes += 1
        node.lits[segment] = child
        node.shapes[child.shape] = node.shapes.get(child.shape, 0) + 1
        self._settle(node, incoming=1)
        return node.lits.get(segment) or node.param

    def _param(self, node: _Node, kind: str | None) -> _Node | None:
        param = node.param
        if param is None:
            if self._nodes >= self.max_nodes:
                return None
            node.param = param = _Node()
            self._nodes += 1
        if kind is not None and (param.kinds is None or kind not in param.kinds):
            param.kinds = (param.kinds or set()) | {kind}
            if kind == "int":
                self._collapse(node, lambda segment, _child: _is_year(segment))
        return param

    def _candidate(self, node: _Node, segment: str) -> _Node | None:
        """Watch the words going into a collapsed node's param; a word that takes a tenth of
        them (``me``, ``search`` seen after the siblings collapsed) becomes a literal."""
        cand = node.cand
        if cand is None:
            node.cand = cand = {}
        node.win += 1
        entry = cand.get(segment)
        if entry is not None:
            entry[0] += 1
            count, span = entry[0], node.win - entry[1] + 1
            # The share's lower bound (about two sigmas) must reach a tenth: a popular id
            # at 5% does not get promoted by a lucky streak, ``me`` at 15% soon does.
            if (count >= self.min_samples
                    and (count - 2 * math.sqrt(count)) * FREQUENT_SHARE >= span
                    and len(node.lits) < self.max_children and self._nodes < self.max_nodes):
                del cand[segment]
                child = _Node(_shape(segment))
                self._nodes += 1
                node.lits[segment] = child
                return child
        elif len(cand) < CANDIDATES:
            cand[segment] = [1, node.win]
        if node.win % PRUNE_EVERY == 0:
            for word in [w for w, (count, since) in cand.items()
                         if count * 50 < node.win - since]:
                del cand[word]
        return None

    def _frequent(self, count: int, total: int) -> bool:
        """A literal among values: seen often, absolutely and as a share of its node."""
        return count >= self._min_frequent and count * FREQUENT_SHARE >= total

    # -- structure -------------------------------------------------------------------------

    def _settle(self, node: _Node, incoming: int = 0) -> None:
        """Apply the literal-or-value rules to a node whose literal children changed.
        ``incoming``: a call about to go through the newest child, not counted yet."""
        lits = node.lits
        if node.collapsed:
            total = self._child_traffic(node) + incoming
            self._collapse(node, lambda _s, c: not self._frequent(c.n, total))
            return
        years = [s for s in lits if _is_year(s)]
        if years and (len(years) >= 2 or _has_numbers(node.param)):
            self._collapse(node, lambda segment, _child: _is_year(segment))
            assert node.param is not None
            node.param.kinds = (node.param.kinds or set()) | {"int"}
        count = len(lits)
        if count < self.min_samples:
            return
        alike = max(node.shapes.values(), default=0) * 4 >= count * 3
        if alike:
            traffic = sum(c.n for c in lits.values()) + incoming
            once = sum(1 for c in lits.values() if c.n <= 1)
            if once * 3 >= traffic * 2 or count >= self.max_children:
                total = self._child_traffic(node) + incoming
                node.collapsed = True
                self._collapse(node, lambda _s, c: not self._frequent(c.n, total))
                return
        if count >= self.max_children:
            node.full = True
            if count > self.max_children:  # after a merge: keep the busiest literals
                busiest = sorted(lits.items(), key=lambda kv: (-kv[1].n, kv[0]))
                for segment, child in busiest[self.max_children:]:
                    del lits[segment]
                    self._fold(node, child)
                self._reshape(node)

    def _child_traffic(self, node: _Node) -> int:
        return node.n - node.end - node.over

    def _collapse(self, node: _Node, moves: Any) -> None:
        """Fold the literal children for which ``moves(segment, child)`` into the param."""
        gone = [(s, c) for s, c in node.lits.items() if moves(s, c)]
        if not gone:
            return
        for segment, _child in gone:
            del node.lits[segment]
        for _segment, child in gone:
            child.shape = 0
            if node.param is None:
                node.param = child
            else:
                self._absorb(node.param, child)
        self._reshape(node)

    def _reshape(self, node: _Node) -> None:
        shapes: dict[int, int] = {}
        for child in node.lits.values():
            shapes[child.shape] = shapes.get(child.shape, 0) + 1
        node.shapes = shapes

    def _absorb(self, into: _Node, src: _Node) -> None:
        """Fold ``src``'s subtree into ``into``'s (``src`` is consumed): counts add up,
        children with the same segment merge, and the rules run again where children
        were added."""
        into.n += src.n
        into.end += src.end
        into.methods = _add_counts(into.methods, src.methods)
        into.over += src.over
        into.over_methods = _add_counts(into.over_methods, src.over_methods)
        if src.kinds:
            into.kinds = (into.kinds or set()) | src.kinds
        self._nodes -= 1
        if src.param is not None:
            if into.param is None:
                into.param = src.param
            else:
                self._absorb(into.param, src.param)
        added = False
        for segment, child in src.lits.items():
            mine = into.lits.get(segment)
            if mine is not None:
                self._absorb(mine, child)
            elif into.full:
                self._fold(into, child)
            else:
                into.lits[segment] = child
                into.shapes[child.shape] = into.shapes.get(child.shape, 0) + 1
                added = True
        if src.cand:
            cand = into.cand or {}
            for word, (count, since) in src.cand.items():
                if word in cand:
                    cand[word][0] += count
                elif len(cand) < CANDIDATES:
                    cand[word] = [count, since]
            into.cand = cand
            into.win = max(into.win, src.win)
        if src.collapsed and not into.collapsed:
            into.collapsed = True
            added = True
        if added or (src.kinds and "int" in src.kinds):
            self._settle(into)

    def _fold(self, node: _Node, child: _Node) -> None:
        """Count a whole subtree in ``node``'s overflow bucket and drop its nodes."""
        stack = [child]
        while stack:
            current = stack.pop()
            self._nodes -= 1
            node.over += current.end + current.over
            node.over_methods = _add_counts(node.over_methods, current.methods)
            node.over_methods = _add_counts(node.over_methods, current.over_methods)
            stack.extend(current.lits.values())
            if current.param is not None:
                stack.append(current.param)

    def _shrink(self) -> None:
        """Back under ``max_nodes`` (after a merge): the quietest leaves go to their
        parents' overflow buckets, deepest first among equals."""
        while self._nodes > self.max_nodes:
            leaves: list[tuple[int, int, str, _Node, _Node]] = []
            stack: list[tuple[_Node, int]] = [(self._root, 0)]
            while stack:
                node, depth = stack.pop()
                for segment, child in node.lits.items():
                    if child.lits or child.param is not None:
                        stack.append((child, depth + 1))
                    else:
                        leaves.append((child.n, -depth, segment, node, child))
                if node.param is not None:
                    child = node.param
                    if child.lits or child.param is not None:
                        stack.append((child, depth + 1))
                    else:
                        leaves.append((child.n, -depth, "", node, child))
            leaves.sort(key=lambda leaf: leaf[:3])
            for _n, _depth, segment, parent, child in leaves[: self._nodes - self.max_nodes]:
                if parent.param is child:
                    parent.param = None
                else:
                    del parent.lits[segment]
                    parent.full = True
                self._fold(parent, child)

    # -- reading ---------------------------------------------------------------------------

    def template(self, path: str) -> str:
        """The template a call to ``path`` is counted under now (for a path never seen:
        the one it would get), e.g. ``/users/{user_id}``."""
        parts: list[str] = []
        names: set[str] = set()
        node: _Node | None = self._root
        parent: str | None = None
        for depth, segment in enumerate(_segments(path)):
            if depth >= MAX_DEPTH:
                parts.append(OVERFLOW)
                break
            child = node.lits.get(segment) if node is not None else None
            if child is not None:
                parts.append(segment)
                parent, node = segment, child
                continue
            route = self._route(node, segment)
            if route == "overflow":
                parts.append(OVERFLOW)
                break
            if route == "literal":
                parts.append(segment)
                parent, node = segment, None
            else:
                parts.append("{" + _unique(_param_name(parent), names) + "}")
                parent, node = None, node.param if node is not None else None
        return "/" + "/".join(parts)

    def _route(self, node: _Node | None, segment: str) -> str:
        """Where ``observe`` would send an unstored segment: literal, param or overflow."""
        kind = classify_segment(segment) if len(segment) <= MAX_LITERAL else "long"
        if node is None:
            return "literal" if kind is None or _is_year(segment) else "param"
        numbers = _has_numbers(node.param)
        if node.collapsed or (
                kind is not None and not (kind == "int" and _is_year(segment) and not numbers)):
            if node.param is None and self._nodes >= self.max_nodes:
                return "overflow"
            return "param"
        if node.full or self._nodes >= self.max_nodes:
            return "overflow"
        return "literal"

    def templates(self) -> list[Template]:
        """Every learned template with its calls by method, sorted by template."""
        found: list[Template] = []
        stack: list[tuple[_Node, tuple[str, ...], tuple[str, ...], str | None]] = [
            (self._root, (), (), None)]
        while stack:
            node, parts, params, parent = stack.pop()
            prefix = "/" + "/".join(parts)
            if node.end:
                found.append(Template(prefix, dict(node.methods or {}), node.end, list(params)))
            if node.over:
                found.append(Template(prefix.rstrip("/") + "/" + OVERFLOW,
                                      dict(node.over_methods or {}), node.over, list(params)))
            for segment, child in node.lits.items():
                stack.append((child, (*parts, segment), params, segment))
            if node.param is not None:
                name = _unique(_param_name(parent), set(params))
                stack.append((node.param, (*parts, "{" + name + "}"), (*params, name), None))
        found.sort(key=lambda t: t.template)
        return found

    def memory_nodes(self) -> int:
        """Trie nodes held: never more than ``max_nodes``, whatever the traffic."""
        return self._nodes

    # -- state -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON-able data (for SQLite or Redis); ``from_dict`` reads it."""
        return {"format": _FORMAT, "max_nodes": self.max_nodes,
                "max_children": self.max_children, "min_samples": self.min_samples,
                "root": _dump(self._root)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TemplateLearner:
        """A learner from ``to_dict``'s data; ValueError for data of another format."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"not a template learner state of format {_FORMAT}")
        try:
            learner = cls(max_nodes=int(data["max_nodes"]),
                          max_children=int(data["max_children"]),
                          min_samples=int(data["min_samples"]))
            learner._root, learner._nodes = _load(data["root"], 0)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"a damaged template learner state: {exc!r}") from exc
        return learner

    def merge(self, other: TemplateLearner) -> None:
        """Add ``other``'s observations to this learner (``other`` is left unchanged), as if
        this one had seen both streams; the result stays within this learner's bounds."""
        root, nodes = _load(_dump(other._root), 0)
        self._nodes += nodes
        self._absorb(self._root, root)  # counts the copied nodes it merges away
        self._shrink()


def _has_numbers(param: _Node | None) -> bool:
    return param is not None and param.kinds is not None and "int" in param.kinds


def _unique(name: str, used: set[str]) -> str:
    candidate, suffix = name, 2
    while candidate in used:
        candidate, suffix = f"{name}{suffix}", suffix + 1
    used.add(candidate)
    return candidate


def _dump(node: _Node) -> dict[str, Any]:
    data: dict[str, Any] = {"n": node.n}
    if node.end:
        data["e"] = node.end
        data["m"] = dict(node.methods or {})
    if node.over:
        data["o"] = node.over
        data["om"] = dict(node.over_methods or {})
    if node.lits:
        data["l"] = {segment: _dump(child) for segment, child in node.lits.items()}
    if node.param is not None:
        data["p"] = _dump(node.param)
    if node.kinds:
        data["k"] = sorted(node.kinds)
    if node.collapsed:
        data["c"] = True
    if node.full:
        data["f"] = True
    if node.cand:
        data["cand"] = {word: list(entry) for word, entry in node.cand.items()}
        data["w"] = node.win
    return data


def _load(data: dict[str, Any], shape: int) -> tuple[_Node, int]:
    node = _Node(shape)
    node.n = int(data["n"])
    node.end = int(data.get("e", 0))
    node.methods = {str(m): int(c) for m, c in data["m"].items()} if "m" in data else None
    node.over = int(data.get("o", 0))
    node.over_methods = ({str(m): int(c) for m, c in data["om"].items()}
                         if "om" in data else None)
    nodes = 1
    for segment, child_data in data.get("l", {}).items():
        child, count = _load(child_data, _shape(segment))
        node.lits[segment] = child
        node.shapes[child.shape] = node.shapes.get(child.shape, 0) + 1
        nodes += count
    if "p" in data:
        node.param, count = _load(data["p"], 0)
        nodes += count
    node.kinds = set(data["k"]) if "k" in data else None
    node.collapsed = bool(data.get("c", False))
    node.full = bool(data.get("f", False))
    if "cand" in data:
        node.cand = {str(w): [int(c), int(s)] for w, (c, s) in data["cand"].items()}
        node.win = int(data.get("w", 0))
    return node, nodes

