"""Whether resource bundles can be placed on a cluster's nodes, each bundle whole on one node.

Ray places each bundle of a placement group, and each actor, on a single node: a trial's bundles (its own
and one per evaluator) can fit a cluster's totals and still not be placeable, and an evaluator's CPUs must
sit on the node that holds its GPU share. Plain Python (no Ray): the callers read the nodes from Ray.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

#: a node's or a bundle's resources: a number of CPUs, or ``{"CPU": .., "GPU": ..}``
Node = float | Mapping[str, float]


#: placements tried by :func:`packs`'s exact search before it settles for first-fit-decreasing's answer
PACK_STEPS = 5_000
#: the most bundles :func:`packs` searches exactly (beyond: first-fit-decreasing alone)
EXACT_BUNDLES = 64


def _resources(item: Node) -> dict[str, float]:
    if isinstance(item, Mapping):
        return {k: float(v) for k, v in item.items() if float(v) > 0}
    return {"CPU": float(item)} if float(item) > 0 else {}


def describe_nodes(nodes: Sequence[Node]) -> str:
    """``CPUs per node: 2, 1``, or with GPUs ``per node: 8 CPU; 4 CPU + 1 GPU``.

    >>> describe_nodes([2.0, 1.0]), describe_nodes([{"CPU": 8.0}, {"CPU": 4.0, "GPU": 1.0}])
    ('CPUs per node: 2, 1', 'per node: 8 CPU; 4 CPU + 1 GPU')
    """
    res = [_resources(n) for n in nodes]
    if all(set(r) <= {"CPU"} for r in res):
        return "CPUs per node: " + ", ".join(f"{r.get('CPU', 0.0):g}" for r in res)
    return "per node: " + "; ".join(" + ".join(f"{v:g} {k}" for k, v in sorted(r.items())) or "nothing" for r in res)


def describe_bundles(bundles: Sequence[Node]) -> str:
    """``0.25 + 0.85 + 0.85 CPUs``, or with GPUs ``0.25 CPU; 4 x (1 CPU + 0.25 GPU)``.

    >>> describe_bundles([0.25, 0.85, 0.85]), describe_bundles([{"CPU": 0.25}] + [{"CPU": 1, "GPU": 0.25}] * 4)
    ('0.25 + 0.85 + 0.85 CPUs', '0.25 CPU; 4 x (1 CPU + 0.25 GPU)')
    """
    res = [_resources(b) for b in bundles]
    if all(set(r) <= {"CPU"} for r in res):
        return " + ".join(f"{r.get('CPU', 0.0):g}" for r in res) + " CPUs"
    groups: list[list] = []  # [count, resources], runs of equal bundles
    for r in res:
        if groups and groups[-1][1] == r:
            groups[-1][0] += 1
        else:
            groups.append([1, r])
    text = [(" + ".join(f"{v:g} {k}" for k, v in sorted(r.items())) or "nothing") for _, r in groups]
    return "; ".join(t if n == 1 else f"{n} x ({t})" for (n, _), t in zip(groups, text))


def packs(bundles: Sequence[Node], capacities: Sequence[Node]) -> bool:
    """Whether every bundle can be placed whole on one node (Ray places a placement group's bundles, and
    actors, each on a single node), every resource of a bundle (CPU, GPU, ...) on the same node.

    First-fit-decreasing; where it finds no placement and there are at most :data:`EXACT_BUNDLES` bundles, an
    exact search (largest bundle first, nodes with equal room tried once) that answers with first fit's "no"
    after :data:`PACK_STEPS` tries: first fit alone refuses placements that exist, e.g. 0.6 + 0.5 + 0.5 + 0.4
    on two 1-CPU nodes.

    >>> packs([0.25, 0.85, 0.85], [1.0, 1.0]), packs([0.25, 0.75, 0.75], [1.0, 1.0]), packs([0.9, 0.9], [2.0])
    (False, True, True)
    >>> packs([0.6, 0.5, 0.5, 0.4], [1.0, 1.0])                          # 0.6 + 0.4 | 0.5 + 0.5
    True
    >>> packs([{"CPU": 1, "GPU": 0.5}] * 2, [{"CPU": 8}, {"CPU": 1, "GPU": 1}])  # CPUs on the head, GPU elsewhere
    False
    """
    need = sorted((_resources(b) for b in bundles), key=lambda r: (r.get("GPU", 0.0), sum(r.values())), reverse=True)
    keys = sorted({k for r in need for k in r})
    want = [tuple(r.get(k, 0.0) for k in keys) for r in need]
    if _first_fit_decreasing(want, [[_resources(c).get(k, 0.0) for k in keys] for c in capacities]):
        return True
    if len(want) > EXACT_BUNDLES:  # the exact search recurses once per bundle: first fit's answer
        return False
    free = [[_resources(c).get(k, 0.0) for k in keys] for c in capacities]
    steps = [0]

    def place(i: int, first: int) -> bool:  # bundle i on a node from `first` on (equal bundles: never an earlier node)
        if i == len(want):
            return True
        tried: set[tuple[float, ...]] = set()
        for n in range(first, len(free)):
            room = free[n]
            key = tuple(round(v, 9) for v in room)
            if key in tried or any(w > r + 1e-9 for w, r in zip(want[i], room)):
                continue
            tried.add(key)
            steps[0] += 1
            if steps[0] > PACK_STEPS:
                raise _TooManySteps
            before = list(room)
            room[:] = [r - w for r, w in zip(room, want[i])]
            if place(i + 1, n if i + 1 < len(want) and want[i + 1] == want[i] else 0):
                return True
            room[:] = before
        return False

    try:
        return place(0, 0)
    except _TooManySteps:
        return False  # first fit found none either


class _TooManySteps(Exception):
    pass


def _first_fit_decreasing(want: list[tuple[float, ...]], free: list[list[float]]) -> bool:
    for bundle in want:
        for room in free:
            if all(w <= r + 1e-9 for w, r in zip(bundle, room)):
                room[:] = [r - w for r, w in zip(room, bundle)]
                break
        else:
            return False
    return True


def copies_that_fit(bundles: Sequence[Node], capacities: Sequence[Node], at_most: Optional[int] = None) -> int:
    """How many copies of ``bundles`` (one trial's) can be placed on the nodes at once (``at_most``: no more
    than that are asked about, e.g. the trials a sweep runs).

    >>> copies_that_fit([0.25, 0.85, 0.85], [2.0, 2.0]), copies_that_fit([{"CPU": 0.5}, {"CPU": 1, "GPU": 0.5}], [
    ...     {"CPU": 8.0}, {"CPU": 4.0, "GPU": 1.0}])                    # the GPU worker holds two evaluators
    (2, 2)
    """
    need = [_resources(b) for b in bundles]
    if not need:
        return 0
    total: dict[str, float] = {}
    for c in capacities:
        for k, v in _resources(c).items():
            total[k] = total.get(k, 0.0) + v
    per_copy: dict[str, float] = {}
    for r in need:
        for k, v in r.items():
            per_copy[k] = per_copy.get(k, 0.0) + v
    if not per_copy:
        return 0
    low, high = 0, int(min(total.get(k, 0.0) / v for k, v in per_copy.items()) + 1e-9)
    if at_most is not None:
        high = min(high, int(at_most))
    while low < high:  # placing k copies is monotone in k: the largest k that packs
        mid = (low + high + 1) // 2
        if packs(list(bundles) * mid, capacities):
            low = mid
        else:
            high = mid - 1
    return low
