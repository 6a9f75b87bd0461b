"""No module of a crate imports another in a circle (`make lint`, issue 21).

Reads each crate's module graph from its sources: a node per module file, an edge for every
`crate::a::b` or `super::x` path outside `#[cfg(test)]`, resolved to the longest module it
names. A module may use its ancestors (they own it); any other circle is a failure, printed
with its members. Tests may reach anywhere.

Why not cargo-modules' `dependencies --acyclic` (measured with 0.27.0, the last for rustc
1.95): it took 11 minutes to install on 2 cores (rust-analyzer inside), on every fresh clone
`make test` runs on; and its check works on items, not modules: with every filter on
(`--no-externs --no-sysroot --no-fns --no-types --no-traits --no-owns`) it still refuses a
type and its own method (`binding::Binding` <-> `Binding::refusal`) as a circle.

Limits: braces inside strings or comments of a `#[cfg(test)]` item can end it early; paths
written without `crate::`/`super::` (a `use` of a sibling through a parent's re-export) are
not seen.
"""

import re
import sys
from pathlib import Path

# The working copy, or another checkout given as the argument.
ROOT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
CRATES = ["crates/domain/src", "crates/aws/src", "crates/pki/src", "crates/testkit/src", "functions/registration/src", "functions/lifecycle/src", "cli/src"]
PATH = r"((?:[a-z_][a-z0-9_]*)(?:::[a-z_][a-z0-9_]*)*)"


def modules(src: Path) -> dict[str, str]:
    """Module path -> its non-test source."""
    found = {}
    for file in src.rglob("*.rs"):
        relative = file.relative_to(src).with_suffix("").as_posix()
        name = relative.removesuffix("/mod").replace("/", "::")
        name = "" if name in ("lib", "main") else name
        if "bin/" in relative:
            continue
        found[name] = without_tests(file.read_text())
    return found


def without_tests(text: str) -> str:
    """The source without its `#[cfg(test)]` items (a `use ...;` or a braced item)."""
    out, at = [], 0
    while (start := text.find("#[cfg(test)]", at)) != -1:
        out.append(text[at:start])
        semicolon, brace = text.find(";", start), text.find("{", start)
        if semicolon != -1 and (brace == -1 or semicolon < brace):
            at = semicolon + 1
            continue
        depth, k = 0, brace
        while k < len(text):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            if depth == 0:
                break
            k += 1
        at = k + 1
    out.append(text[at:])
    return "".join(out)


def graph(found: dict[str, str]) -> dict[str, set[str]]:
    def resolve(path: str) -> str | None:
        parts = path.split("::")
        for k in range(len(parts), 0, -1):
            if "::".join(parts[:k]) in found:
                return "::".join(parts[:k])
        return None

    edges = {}
    for name, text in found.items():
        parent = "::".join(name.split("::")[:-1])
        targets = [resolve(p) for p in re.findall(r"\bcrate::" + PATH, text)]
        targets += [resolve(f"{parent}::{p}" if parent else p) for p in re.findall(r"\bsuper::" + PATH, text)]
        edges[name] = {
            t for t in targets
            if t is not None and t != name and t != "" and not name.startswith(t + "::")
        }
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    failed = False
    total = 0
    for crate in CRATES:
        found = modules(ROOT / crate)
        total += len(found)
        for circle in circles(graph(found)):
            failed = True
            print(f"{crate}: modules import each other in a circle: {' <-> '.join(circle)}")
    print(f"module circles: {'found' if failed else 'none'} ({total} modules in {len(CRATES)} crates)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
