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
"""

from __future__ import annotations

import sys

MODEL_WEIGHT = 1.0
OTHER_WEIGHT = 0.25


def longest_path_scores(graph, is_model) -> dict[str, float]:
    """Each node's score for dbt's priority queue (lower starts first): minus the weight of
    the longest path from the node to a node nothing waits for, the node itself included."""
    import networkx as nx

    remaining: dict[str, float] = {}
    for node in reversed(list(nx.topological_sort(graph))):
        below = max((remaining[child] for child in graph.successors(node)), default=0.0)
        remaining[node] = (MODEL_WEIGHT if is_model(node) else OTHER_WEIGHT) + below
    return {node: -length for node, length in remaining.items()}


def install_scheduler() -> None:
    """Replace dbt's scoring of ready nodes (``GraphQueue._get_scores``) by
    :func:`longest_path_scores`."""
    from dbt.graph.queue import GraphQueue

    def _get_scores(self, graph) -> dict[str, float]:
        return longest_path_scores(graph, lambda node: node.startswith("model."))

    GraphQueue._get_scores = _get_scores


def main() -> None:
    install_scheduler()
    from dbt.cli.main import cli

    sys.exit(cli())


if __name__ == "__main__":
    main()
