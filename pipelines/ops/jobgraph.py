"""The jobs' dependency graph: which job feeds which (reads/writes, ``after``), and which two jobs conflict.

Tables are named as in the lake (``silver/usage``) or by a prefix ending in ``*``
(``gold/*``). Job B depends on job A when B lists A in ``after`` or B reads a table A writes;
two jobs conflict (never run side by side) when one writes a table the other reads or writes,
or when either is ``exclusive``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol


class _JobLike(Protocol):
    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    after: tuple[str, ...]
    exclusive: bool


def overlap(a: str, b: str) -> bool:
    """Whether two table names or ``prefix*`` patterns can name the same table."""
    wild_a, wild_b = a.endswith("*"), b.endswith("*")
    pa, pb = a.rstrip("*"), b.rstrip("*")
    if wild_a and wild_b:
        return pa.startswith(pb) or pb.startswith(pa)
    if wild_a:
        return b.startswith(pa)
    if wild_b:
        return a.startswith(pb)
    return a == b


def any_overlap(these: Iterable[str], those: Iterable[str]) -> bool:
    those = list(those)
    return any(overlap(a, b) for a in these for b in those)


def matches(table: str, patterns: Iterable[str]) -> bool:
    """Whether lake table ``table`` is one of ``patterns``."""
    return any(overlap(table, p) for p in patterns)


def conflict(a: _JobLike, b: _JobLike) -> bool:
    """Two jobs that must not run at the same time."""
    if a.name == b.name or a.exclusive or b.exclusive:
        return True
    return any_overlap(a.writes, b.reads) or any_overlap(b.writes, a.reads) or any_overlap(a.writes, b.writes)


def dependencies(jobs: Mapping[str, _JobLike]) -> dict[str, set[str]]:
    """Job -> the jobs that run before it when both are due (``after``, and writers of what it reads).

    An edge implied by reads/writes that would close a cycle (two jobs that feed each other)
    is left out; ``after`` edges always count (:func:`after_cycle` refuses a cycle of them).
    """
    deps: dict[str, set[str]] = {n: set(j.after) & set(jobs) for n, j in jobs.items()}
    for name, job in jobs.items():
        for other_name, other in jobs.items():
            if other_name != name and any_overlap(other.writes, job.reads) and not _reaches(deps, other_name, name):
                deps[name].add(other_name)
    return deps


def _reaches(deps: Mapping[str, set[str]], start: str, target: str) -> bool:
    """Whether ``start`` already (transitively) depends on ``target``."""
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == target:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(deps.get(node, ()))
    return False


def order(jobs: Mapping[str, _JobLike]) -> list[str]:
    """Every job, each after the jobs it depends on (ties in config order)."""
    deps = dependencies(jobs)
    done: list[str] = []
    pending = list(jobs)
    while pending:
        ready = next(n for n in pending if deps[n] <= set(done))
        done.append(ready)
        pending.remove(ready)
    return done


def after_cycle(jobs: Mapping[str, _JobLike]) -> list[str]:
    """A cycle of ``after`` edges as ``[a, b, ..., a]``, or [] when there is none."""
    graph = {n: [a for a in j.after if a in jobs] for n, j in jobs.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []
