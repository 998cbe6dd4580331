#!/usr/bin/env python3
"""Reports import cycles between the Rust files under src/.

A file depends on another when it names a path into it: `use crate::a::b::…`, an inline
`crate::a::b::X`, `super::…`, or `use child::…` for a child module. Each path is resolved to the
longest prefix that is a module file (`src/a/b.rs`, `src/a/b/mod.rs`, or a `#[path = "…"]` file).
Declaring a child (`mod x;`) is not a dependency, and neither is an inline test module's
`use super::*` (it names its own file). Comments and string literals are ignored.

Usage: scripts/import-cycles.py [SRC_DIR]   (default: src). Exit status 1 when a cycle exists.
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH_MODULE = re.compile(
    rf'#\[path\s*=\s*"([^"]+)"\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+({IDENT})\s*;'
)


def module_table(src: Path) -> dict[tuple[str, ...], Path]:
    """Module path → file, from the directory layout and `#[path = "…"] mod name;`."""
    table = {}
    for file in sorted(src.rglob("*.rs")):
        if file == src / "main.rs":
            continue  # the binary: its own crate root, outside the library's graph
        parts = list(file.relative_to(src).with_suffix("").parts)
        if parts[-1] in ("mod", "lib"):
            parts = parts[:-1]
        table[tuple(parts)] = file
    for file in list(table.values()):
        for m in PATH_MODULE.finditer(file.read_text()):
            declared = (file.parent / m.group(1)).resolve()
            owner = next(k for k, v in table.items() if v == file)
            table = {k: v for k, v in table.items() if v.resolve() != declared}
            table[owner + (m.group(2),)] = file.parent / m.group(1)
    return table


def strip_literals(text: str) -> str:
    """Blanks comments, string and char literals so that braces and paths in them are ignored."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif raw := re.match(r'b?r(#*)"', text[i : i + 64]):
            end = text.find('"' + raw.group(1), i + raw.end())
            out.append('""')
            i = n if end < 0 else end + 1 + len(raw.group(1))
        elif c == '"' or text.startswith('b"', i):
            i += 1 if c == '"' else 2
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and (char := re.match(r"'(?:\\.[^']*|[^'\\])'", text[i : i + 16])):
            out.append("' '")
            i += char.end()
        else:
            # Keep identifiers whole so that `br` or `r` inside one never opens a raw string.
            word = re.match(r"[A-Za-z0-9_]+", text[i:])
            if word:
                out.append(word.group(0))
                i += word.end()
            else:
                out.append(c)
                i += 1
    return "".join(out)


def expand_use_tree(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` → [`a::b`, `a::c::d`, `a::c::e`]."""
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [re.sub(r"\bas\b.*", "", tree)]
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rindex("}")]
    parts, depth, start = [], 0, 0
    for i, c in enumerate(inner):
        depth += c == "{"
        depth -= c == "}"
        if c == "," and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
    parts.append(inner[start:])
    return [p for part in parts if part for p in expand_use_tree(prefix + part)]


def dependencies(table: dict[tuple[str, ...], Path], file: Path) -> set[Path]:
    text = strip_literals(file.read_text())
    here = next(list(k) for k, v in table.items() if v == file)

    def file_of(module: list[str]) -> Path | None:
        return table.get(tuple(module))

    # Inline `mod name { … }` blocks shift what `super` means; track them by brace depth.
    inline_at: list[tuple[int, str]] = []
    depth = 0
    paths: list[tuple[list[str], str]] = []  # (module the path is written in, path)
    token = re.compile(
        rf"\bmod\s+({IDENT})\s*\{{|[{{}}]|\buse\s+([^;]+);|\b((?:crate|super)(?:::{IDENT})+)"
    )
    for m in token.finditer(text):
        inner = [name for _, name in inline_at]
        if m.group(1):
            depth += 1
            inline_at.append((depth, m.group(1)))
        elif m.group(0) == "{":
            depth += 1
        elif m.group(0) == "}":
            if inline_at and inline_at[-1][0] == depth:
                inline_at.pop()
            depth -= 1
        elif m.group(2):
            for p in expand_use_tree(m.group(2)):
                paths.append((here + inner, p))
        else:
            paths.append((here + inner, m.group(3)))
    deps = set()
    for written_in, path in paths:
        segs = [s for s in path.split("::") if s and s not in ("*", "self")]
        if not segs:
            continue
        if segs[0] == "crate":
            target, rest = [], segs[1:]
        elif segs[0] == "super":
            target, rest = list(written_in), segs
            while rest and rest[0] == "super":
                target, rest = target[:-1], rest[1:]
        elif file_of(here + [segs[0]]) and len(written_in) == len(here):
            target, rest = list(here), segs  # `use child::…` from a module's own file
        else:
            continue  # an external crate, std, or a local name
        best = file_of(target)
        for s in rest:
            target = target + [s]
            found = file_of(target)
            if found is None:
                break
            best = found
        if best is not None and best != file:
            deps.add(best)
    return deps


def cycles(graph: dict[Path, set[Path]]) -> list[list[Path]]:
    """Strongly connected components with more than one file (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    table = module_table(src)
    files = sorted(table.values())
    graph = {f: dependencies(table, f) for f in files}
    found = cycles(graph)
    for component in found:
        members = set(component)
        print(f"cycle among {len(component)} files:")
        for f in component:
            inside = sorted(str(d.relative_to(src)) for d in graph[f] & members)
            print(f"  {f.relative_to(src)} -> {', '.join(inside)}")
    if not found:
        print(f"no import cycle among {len(files)} files")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
