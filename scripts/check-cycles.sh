#!/usr/bin/env bash
# Fails when the top-level modules of a crate import each other in a cycle.
#
# For each crate's src/ (agent, collector by default, or the dirs given as
# arguments) it collects the edges `a -> b` where a file under module `a`
# names `crate::b` (in a `use`, a `use crate::{b::.., c::..}` group or an
# inline path) or climbs to the crate root with `super::` and names `b`.
# Comments are ignored; `#[cfg(test)]` code counts too (a test that needs a
# cycle is a design smell as well). Prints the edges, then any cycle.
#
#   scripts/check-cycles.sh            # agent/src and collector/src
#   scripts/check-cycles.sh -v         # also list every edge
#   scripts/check-cycles.sh some/src   # another crate
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import os, re, sys

verbose = "-v" in sys.argv[1:]
roots = [a for a in sys.argv[1:] if a != "-v"] or ["agent/src", "collector/src"]

def module_path(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return []
    return rel

def strip_comments(text):
    out = []
    for line in text.splitlines():
        # Drop `//` comments but not `//` inside a string literal ("http://").
        in_str, i, cut = False, 0, len(line)
        while i < len(line):
            c = line[i]
            if c == "\\" and in_str:
                i += 2
                continue
            if c == '"':
                in_str = not in_str
            elif not in_str and line.startswith("//", i):
                cut = i
                break
            i += 1
        out.append(line[:cut])
    return "\n".join(out)

def group_heads(text, start):
    """Names at the top level of the `{...}` group opening at text[start]."""
    depth, item, heads = 0, "", []
    for c in text[start:]:
        if c == "{":
            depth += 1
            if depth == 1:
                continue
        elif c == "}":
            depth -= 1
            if depth == 0:
                heads.append(item)
                break
        if depth == 1 and c == ",":
            heads.append(item)
            item = ""
        elif depth >= 1:
            item += c
    names = []
    for h in heads:
        m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", h)
        if m:
            names.append(m.group(1))
    return names

def edges_of(src):
    tops = set()
    for entry in os.listdir(src):
        p = os.path.join(src, entry)
        if entry.endswith(".rs") and entry not in ("lib.rs", "main.rs"):
            tops.add(entry[:-3])
        elif os.path.isdir(p):
            tops.add(entry)
    edges = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            mod = module_path(src, path)
            if not mod:
                continue
            a = mod[0]
            text = strip_comments(open(path, encoding="utf-8").read())
            named = []
            for m in re.finditer(r"\bcrate\s*::\s*(\{|[A-Za-z_][A-Za-z0-9_]*)", text):
                if m.group(1) == "{":
                    named += group_heads(text, m.start(1))
                else:
                    named.append(m.group(1))
            # `super::super::x` from a file deep enough to reach the root.
            for m in re.finditer(r"\b((?:super\s*::\s*)+)([A-Za-z_][A-Za-z0-9_]*)", text):
                if m.group(1).count("super") == len(mod):
                    named.append(m.group(2))
            for b in named:
                if b in tops and b != a:
                    edges.setdefault(a, {}).setdefault(b, set()).add(os.path.relpath(path, src))
    return edges

def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1
        stack.append(v); on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out

failed = False
for src in roots:
    edges = edges_of(src)
    found = cycles(edges)
    n_edges = sum(len(ws) for ws in edges.values())
    print(f"{src}: {len(edges)} importing modules, {n_edges} edges, "
          f"{'no cycle' if not found else str(len(found)) + ' cycle(s)'}")
    if verbose:
        for a in sorted(edges):
            print(f"  {a} -> {', '.join(sorted(edges[a]))}")
    for comp in found:
        failed = True
        print(f"  CYCLE among {{{', '.join(comp)}}}:")
        for a in comp:
            for b in sorted(edges.get(a, {})):
                if b in comp:
                    print(f"    {a} -> {b}  ({', '.join(sorted(edges[a][b]))})")
sys.exit(1 if failed else 0)
PY
