#!/usr/bin/env python3
"""Finds import circles between the top-level modules of each crate in the workspace.

A crate is a directory under `crates/` or `sim/` that holds a `Cargo.toml` and a `src/`.
Each crate root (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs`, `src/bin/*/main.rs`) has
its own top-level modules: the `mod name;` items it declares. Module `a` depends on
module `b` when any file of `a` names `b` through `crate::b`, through `super::`/`self::`
paths that lead out of `a` into `b`, or through a name the root re-exports from `b`
(`pub use b::Name;` then `crate::Name`). Comments and string literals are ignored.

Prints every circle it finds, with the file and line of each edge, and exits 1; exits 0
when there is none. `python3 .ci/module_cycles.py [--skip CRATE_DIR]... [REPO_ROOT]`;
`--skip` names a crate (`sim`) whose circles are reported but do not fail the check.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(text: str) -> str:
    """`text` with comments, string and char literals blanked (newlines kept)."""
    out: list[str] = []
    i, n = 0, len(text)

    def blank(chunk: str) -> str:
        return re.sub(r"[^\n]", " ", chunk)

    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif (raw := re.match(r'b?r(#*)"', text[i : i + 260])) and (
            i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            close = '"' + raw.group(1)
            j = text.find(close, i + len(raw.group(0)))
            j = n if j < 0 else j + len(close)
            out.append(blank(text[i:j]))
            i = j
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(blank(text[i : j + 1]))
            i = j + 1
        elif text[i] == "'" and (
            char := re.match(r"'(?:\\u\{[0-9a-fA-F]+\}|\\.|[^\\'\n])'", text[i:])
        ):
            out.append(" " * len(char.group(0)))
            i += len(char.group(0))
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def group_heads(text: str, open_at: int) -> list[str]:
    """The first path segment of each item of the `{...}` use group opening at `open_at`."""
    depth, start, heads = 0, open_at + 1, []
    for j in range(open_at, len(text)):
        ch = text[j]
        if ch == "{":
            depth += 1
            if depth == 1:
                start = j + 1
            continue
        if ch == "}":
            depth -= 1
        if (ch == "," and depth == 1) or depth == 0:
            item = text[start:j].strip()
            head = re.match(IDENT, item)
            if head:
                heads.append(head.group(0))
            start = j + 1
            if depth == 0:
                break
    return heads


class Root:
    """One crate root, its top-level modules and what it re-exports."""

    def __init__(self, crate: str, src: Path, file: Path, module_dir: Path):
        self.crate = crate
        self.src = src
        self.file = file
        self.module_dir = module_dir
        text = strip_comments_and_strings(file.read_text())
        self.modules = sorted(set(top_level_mods(text)))
        self.reexports = root_reexports(text, set(self.modules))

    @property
    def name(self) -> str:
        if self.file.name == "lib.rs":
            return self.crate
        return f"{self.crate} ({self.file.relative_to(self.src).as_posix()})"

    def files_of(self, module: str) -> list[tuple[Path, list[str]]]:
        """Each file of `module` with its module path (`["rate", "keyed"]`)."""
        found = []
        flat = self.module_dir / f"{module}.rs"
        if flat.is_file():
            found.append((flat, [module]))
        folder = self.module_dir / module
        if folder.is_dir():
            for path in sorted(folder.rglob("*.rs")):
                parts = list(path.relative_to(self.module_dir).with_suffix("").parts)
                if parts[-1] == "mod":
                    parts.pop()
                found.append((path, parts))
        return found


def top_level_mods(text: str) -> list[str]:
    """`mod name;` items at brace depth 0."""
    names, depth = [], 0
    for m in re.finditer(rf"[{{}}]|\bmod\s+({IDENT})\s*;", text):
        tok = m.group(0)
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
        elif depth == 0:
            names.append(m.group(1))
    return names


def root_reexports(text: str, modules: set[str]) -> dict[str, str]:
    """Names the root re-exports from its modules (`pub use admission::{Admission, ..}`)."""
    names: dict[str, str] = {}
    for m in re.finditer(rf"\buse\s+(?:(?:crate|self)\s*::\s*)?({IDENT})\s*::", text):
        module = m.group(1)
        if module not in modules:
            continue
        rest = text[m.end() :]
        end = rest.find(";")
        body = rest[:end] if end >= 0 else rest
        # Every identifier that is imported under its own name or an alias.
        for item in re.finditer(rf"({IDENT})(?:\s+as\s+({IDENT}))?\s*(?=[,}}]|$)", body):
            names[item.group(2) or item.group(1)] = module
    return names


PATH = re.compile(rf"\bmod\s+({IDENT})\s*\{{|[{{}}]|(?<![\w$])((?:crate|self|super)(?:\s*::\s*super)*)\s*::\s*")


def edges_of_file(path: Path, module_path: list[str], root: Root):
    """(target module, line) for every path in `path` that leaves its top-level module."""
    raw = path.read_text()
    text = strip_comments_and_strings(raw)
    here = module_path[0]
    # Each open brace: the inline module it opens, or None.
    stack: list[str | None] = []
    for m in PATH.finditer(text):
        tok = m.group(0)
        if m.group(1):
            stack.append(m.group(1))
            continue
        if tok == "{":
            stack.append(None)
            continue
        if tok == "}":
            if stack:
                stack.pop()
            continue
        prefix = [p.strip() for p in m.group(2).split("::")]
        current = module_path + [name for name in stack if name is not None]
        if prefix[0] == "crate":
            base: list[str] = []
        else:
            base = list(current)
            for part in prefix:
                if part == "super":
                    if not base:
                        break
                    base.pop()
        if base:
            targets = [base[0]]
        else:
            after = text[m.end() :]
            if after.startswith("{"):
                targets = group_heads(text, m.end())
            else:
                head = re.match(IDENT, after)
                targets = [head.group(0)] if head else []
        for target in targets:
            target = root.reexports.get(target, target)
            if target in root.modules and target != here:
                yield target, line_of(text, m.start())


def crate_roots(repo: Path) -> list[Root]:
    roots = []
    manifests = sorted(repo.glob("crates/*/Cargo.toml")) + sorted(repo.glob("sim/**/Cargo.toml"))
    for manifest in manifests:
        if "target" in manifest.parts:
            continue
        src = manifest.parent / "src"
        if not src.is_dir():
            continue
        crate = str(manifest.parent.relative_to(repo))
        for name in ("lib.rs", "main.rs"):
            if (src / name).is_file():
                roots.append(Root(crate, src, src / name, src))
        bins = src / "bin"
        if bins.is_dir():
            for entry in sorted(bins.iterdir()):
                if entry.suffix == ".rs":
                    roots.append(Root(crate, src, entry, bins))
                elif (entry / "main.rs").is_file():
                    roots.append(Root(crate, src, entry / "main.rs", entry))
    return roots


def graph_of(root: Root, repo: Path):
    """module -> {target: first (file, line) naming it}."""
    graph: dict[str, dict[str, tuple[str, int]]] = {m: {} for m in root.modules}
    for module in root.modules:
        for path, module_path in root.files_of(module):
            for target, line in edges_of_file(path, module_path, root):
                graph[module].setdefault(target, (str(path.relative_to(repo)), line))
    return graph


def circles(graph: dict[str, dict[str, tuple[str, int]]]) -> list[tuple[list[str], list[str]]]:
    """Each strongly connected component of more than one module, with one circle
    through its first member."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    found = []
    for component in components:
        members = set(component)
        # A shortest way back to the first member, breadth first within the component.
        start = component[0]
        previous: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in previous:
            following = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w in members and w not in previous:
                        previous[w] = v
                        following.append(w)
            frontier = following
        path = [start]
        v = previous[start]
        while v != start:
            path.append(v)
            v = previous[v]
        path.append(start)
        path.reverse()
        found.append((component, path))
    return found


def check(repo: Path, skip: frozenset[str] = frozenset()) -> list[str]:
    """A report line per circle found in any crate under `repo` but those in `skip`."""
    reports = []
    for root in crate_roots(repo):
        if root.crate in skip:
            continue
        graph = graph_of(root, repo)
        for component, path in circles(graph):
            hops = [
                f"    {a} -> {b}: {graph[a][b][0]}:{graph[a][b][1]}"
                for a, b in zip(path, path[1:])
            ]
            tangled = ""
            if len(component) > len(path) - 1:
                tangled = f" (all tangled: {', '.join(component)})"
            reports.append(f"{root.name}: {' -> '.join(path)}{tangled}\n" + "\n".join(hops))
    return reports


def main() -> int:
    args = sys.argv[1:]
    skip = set()
    while len(args) >= 2 and args[0] == "--skip":
        skip.add(args[1])
        args = args[2:]
    repo = Path(args[0] if args else Path(__file__).resolve().parent.parent)
    all_roots = crate_roots(repo)
    roots = [r for r in all_roots if r.crate not in skip]
    others = frozenset(r.crate for r in roots)
    for report in check(repo, others):
        print(f"module circle (skipped) in {report}")
    reports = check(repo, frozenset(skip))
    for report in reports:
        print(f"module circle in {report}")
    if reports:
        return 1
    print(f"no module circle in {len(roots)} crate roots: " + ", ".join(r.name for r in roots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
