"""The order in which `siteline-dbt` starts ready nodes: longest remaining path first."""

from __future__ import annotations

import networkx as nx
from dbt.graph.queue import GraphQueue

from orchestration.dbt_main import install_scheduler, longest_path_scores


def build_graph() -> nx.DiGraph:
    """A `dbt build` shaped like the marts: fct_sessions' test blocks the models above it;
    fct_page_views' test blocks nothing; int_customer_activity leads to customers."""
    graph = nx.DiGraph()
    graph.add_edges_from([
        ("model.p.int_sessions", "model.p.fct_sessions"),
        ("model.p.int_sessions", "model.p.fct_page_views"),
        ("model.p.fct_page_views", "test.p.not_null_fct_page_views"),
        ("model.p.fct_sessions", "test.p.unique_fct_sessions"),
        ("test.p.unique_fct_sessions", "model.p.customer_daily_activity"),
        ("test.p.unique_fct_sessions", "model.p.int_customer_activity"),
        ("model.p.int_customer_activity", "model.p.customers"),
        ("model.p.customers", "test.p.unique_customers"),
    ])  # fmt: skip
    return graph


def test_scores_are_the_longest_remaining_path_models_weighing_more_than_tests():
    scores = longest_path_scores(build_graph(), lambda node: node.startswith("model."))
    assert scores["test.p.unique_customers"] == -0.25
    assert scores["model.p.customers"] == -1.25
    assert scores["model.p.int_customer_activity"] == -2.25
    assert scores["model.p.customer_daily_activity"] == -1.0
    assert scores["test.p.not_null_fct_page_views"] == -0.25
    assert scores["model.p.fct_sessions"] == -3.5  # 1 + test 0.25 + 2.25
    assert scores["model.p.int_sessions"] == -4.5


class Manifest:
    def expect(self, node_id):
        return node_id


def drain(queue: GraphQueue) -> list[str]:
    """The order a single thread gets the nodes in."""
    order = []
    while not queue.empty():
        node = queue.get(block=False)
        order.append(node)
        queue.mark_done(node)
    return order


def test_dbt_queue_starts_the_longest_path_first():
    """dbt's own queue with the scheduler installed: after fct_sessions' test,
    int_customer_activity (two models to go) before customer_daily_activity, which dbt
    would start first (same depth, earlier name); fct_page_views, which dbt would start
    right after int_sessions (lower depth), waits behind the sessions' branch."""
    install_scheduler()
    graph = build_graph()
    order = drain(GraphQueue(graph, Manifest(), set(graph.nodes)))
    assert order == [
        "model.p.int_sessions",
        "model.p.fct_sessions",
        "test.p.unique_fct_sessions",
        "model.p.int_customer_activity",
        "model.p.customers",  # ties with fct_page_views (1.25): by name
        "model.p.fct_page_views",
        "model.p.customer_daily_activity",
        "test.p.not_null_fct_page_views",
        "test.p.unique_customers",
    ]
