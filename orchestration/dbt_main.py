"""``siteline-dbt``: dbt's command line, starting the node on the longest remaining path first.

dbt hands its threads the ready nodes in order of their depth in the graph, ties by name. In
a ``dbt build`` a model's tests sit between it and the models above it, so the tests of a
model that nothing waits for (fct_page_views) come before the deepest models, and among
models of one depth ``customer_daily_activity`` comes before ``int_customer_activity``,
which the last model of the build waits for. With more threads than cores the node started
last also gets the least of the processors: ``int_customer_activity`` waited behind models
and tests that nothing after them waited for.

Here a ready node's priority is the length of the longest path from it to the end of the
build, counting a model as 1 and any other node (a test, a seed, a hook) as a quarter: the
models, not the tests, are what the next nodes wait for. Ties keep dbt's order (by name).
Everything else is dbt's own command line (``dbt.cli.main``); Siteline runs dbt through
this everywhere (``siteline dbt``, Dagster's dbt resource, the manifest parse).

dbt has no setting for this order, so the scheduler replaces a private method of dbt's
``GraphQueue`` (``_get_scores``, which ``__init__`` calls once and whose scores
``_find_new_additions`` queues, lower first). A private method may change in any dbt
release, so the replacement is made only on the code it was checked against: the sources
of those three methods must hash to :data:`VERIFIED_SOURCES`. When they do not (dbt
upgraded and changed them, or the method is gone or takes other arguments), ``siteline-dbt``
says so once on stderr and dbt runs with its own order: every build still does the same
work, only the order of ready nodes differs. ``tests/unit/test_dbt_scheduler.py`` fails on
such a dbt with what to re-check. ``SITELINE_DBT_LONGEST_PATH_FIRST=0`` keeps dbt's order.
"""

from __future__ import annotations

import hashlib
import inspect
import sys

MODEL_WEIGHT = 1.0
OTHER_WEIGHT = 0.25

# The dbt-core release whose GraphQueue the scheduler was checked against, and the SHA-256 of
# the source (inspect.getsource) of each method it relies on: __init__ sets
# ``self._scores = self._get_scores(self.graph)`` once, _get_scores(self, graph) returns a
# score for every node of the graph, _find_new_additions queues ``(self._scores[node], node)``
# in a PriorityQueue (lower first, ties by id), and nothing else reads the scores.
VERIFIED_DBT_CORE = "1.11.16"
VERIFIED_SOURCES = {
    "__init__": "3b82d0fe49ba5f3acbc066e249b33161a19f735d39156c0c772b22850b0e9303",
    "_get_scores": "828b07d7a37dd9ebce30fc5ddd8420863e52aeeba49525ef6167d7707e9b7bce",
    "_find_new_additions": "f097d3760efbf7ce691a3456745518815adfefc775b4b05cfa7c9b8846ad824d",
}


def longest_path_scores(graph, is_model) -> dict[str, float]:
    """Each node's score for dbt's priority queue (lower starts first): minus the weight of
    the longest path from the node to a node nothing waits for, the node itself included."""
    import networkx as nx

    remaining: dict[str, float] = {}
    for node in reversed(list(nx.topological_sort(graph))):
        below = max((remaining[child] for child in graph.successors(node)), default=0.0)
        remaining[node] = (MODEL_WEIGHT if is_model(node) else OTHER_WEIGHT) + below
    return {node: -length for node, length in remaining.items()}


def _get_scores(self, graph) -> dict[str, float]:
    """``GraphQueue._get_scores`` once the scheduler is installed."""
    return longest_path_scores(graph, lambda node: node.startswith("model."))


def source_hashes(queue_class) -> dict[str, str]:
    """The SHA-256 of the source of each method of :data:`VERIFIED_SOURCES` in
    ``queue_class`` (``"missing"``, ``"no source"`` where there is none to read)."""
    hashes = {}
    for name in VERIFIED_SOURCES:
        method = getattr(queue_class, name, None)
        if method is None:
            hashes[name] = "missing"
            continue
        try:
            source = inspect.getsource(method)
        except (OSError, TypeError):
            hashes[name] = "no source"
            continue
        hashes[name] = hashlib.sha256(source.encode()).hexdigest()
    return hashes


def graph_queue_difference(queue_class) -> str | None:
    """How ``queue_class`` (dbt's ``GraphQueue``) differs from the one the scheduler was
    checked against, or None when it is that one."""
    scores = getattr(queue_class, "_get_scores", None)
    if scores is None:
        return "GraphQueue has no _get_scores"
    try:
        parameters = list(inspect.signature(scores).parameters)
    except (TypeError, ValueError):
        parameters = None
    if parameters != ["self", "graph"]:
        shown = ", ".join(parameters) if parameters is not None else "?"
        return f"GraphQueue._get_scores takes ({shown}), not (self, graph)"
    changed = [
        name
        for name, digest in source_hashes(queue_class).items()
        if digest != VERIFIED_SOURCES[name]
    ]
    if changed:
        return "the source of GraphQueue." + ", GraphQueue.".join(changed) + " differs"
    return None


def _dbt_core_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dbt-core")
    except PackageNotFoundError:
        return "?"


def install_scheduler(queue_class=None) -> bool:
    """Replace ``queue_class._get_scores`` (default: dbt's ``GraphQueue``) by
    :func:`longest_path_scores`, if the class is the one the scheduler was checked against.

    Otherwise leave it as it is, say so on stderr and return False: dbt keeps its own order."""
    if queue_class is None:
        from dbt.graph.queue import GraphQueue

        queue_class = GraphQueue
    if getattr(queue_class, "_get_scores", None) is _get_scores:
        return True  # already installed
    difference = graph_queue_difference(queue_class)
    if difference is not None:
        print(
            f"siteline-dbt: dbt-core {_dbt_core_version()}: {difference} from dbt-core "
            f"{VERIFIED_DBT_CORE}'s, which the longest-path-first order was checked against "
            "(orchestration/dbt_main.py); dbt starts ready nodes in its own order. "
            "SITELINE_DBT_LONGEST_PATH_FIRST=0 asks for that order without this message.",
            file=sys.stderr,
        )
        return False
    queue_class._get_scores = _get_scores
    return True


def choose_order(queue_class=None) -> bool:
    """The order of ready nodes as configured: longest path first (:func:`install_scheduler`)
    unless ``SITELINE_DBT_LONGEST_PATH_FIRST`` is off. True when the scheduler is in place."""
    from ingestion.core.settings import settings

    if not settings().dbt_longest_path_first:
        return False
    return install_scheduler(queue_class)


def main() -> None:
    from ingestion.core.errors import SitelineError

    try:
        choose_order()
    except SitelineError as exc:  # a bad SITELINE_DBT_LONGEST_PATH_FIRST
        print(f"siteline-dbt: {exc}", file=sys.stderr)
        sys.exit(2)
    from dbt.cli.main import cli

    sys.exit(cli())


if __name__ == "__main__":
    main()
