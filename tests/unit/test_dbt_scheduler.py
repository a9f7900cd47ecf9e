"""The order in which `siteline-dbt` starts ready nodes: longest remaining path first, on the
dbt it was checked against; dbt's own order on any other, or when the setting is off."""

from __future__ import annotations

import networkx as nx
import pytest
from dbt.graph.queue import GraphQueue

from orchestration.dbt_main import (
    VERIFIED_DBT_CORE,
    _dbt_core_version,
    choose_order,
    graph_queue_difference,
    install_scheduler,
    longest_path_scores,
    source_hashes,
)


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


def new_queue_class() -> type:
    """dbt's GraphQueue as a class of its own, so that installing the scheduler on it leaves
    dbt's class (read by the other tests) as dbt ships it."""
    return type("GraphQueue", (GraphQueue,), {})


def drain_build(queue_class) -> list[str]:
    graph = build_graph()
    return drain(queue_class(graph, Manifest(), set(graph.nodes)))


LONGEST_PATH_ORDER = [
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
# dbt's own: by depth, ties by name.
DBT_ORDER = [
    "model.p.int_sessions",
    "model.p.fct_page_views",
    "model.p.fct_sessions",
    "test.p.not_null_fct_page_views",
    "test.p.unique_fct_sessions",
    "model.p.customer_daily_activity",
    "model.p.int_customer_activity",
    "model.p.customers",
    "test.p.unique_customers",
]


def test_dbt_queue_starts_the_longest_path_first():
    """dbt's own queue with the scheduler installed: after fct_sessions' test,
    int_customer_activity (two models to go) before customer_daily_activity, which dbt
    would start first (same depth, earlier name); fct_page_views, which dbt would start
    right after int_sessions (lower depth), waits behind the sessions' branch."""
    queue_class = new_queue_class()
    assert install_scheduler(queue_class) is True
    assert drain_build(queue_class) == LONGEST_PATH_ORDER


def test_the_installed_dbt_has_the_graph_queue_the_scheduler_was_checked_against():
    """Fails when a dbt upgrade changed what the scheduler replaces: siteline-dbt then runs
    with dbt's own order (and says so) until someone checks the new dbt and updates
    orchestration/dbt_main.py."""
    difference = graph_queue_difference(GraphQueue)
    assert difference is None, (
        f"dbt-core {_dbt_core_version()}: {difference}; orchestration/dbt_main.py was checked "
        f"against dbt-core {VERIFIED_DBT_CORE}, and siteline-dbt now keeps dbt's own order. "
        "Re-check in dbt/graph/queue.py that GraphQueue.__init__ still sets "
        "self._scores = self._get_scores(self.graph) once, that _get_scores(self, graph) still "
        "scores every node, that _find_new_additions still queues (self._scores[node], node) "
        "in a PriorityQueue (lower first) and that nothing else reads the scores (grep "
        "_get_scores and _scores in dbt/); if so, set VERIFIED_DBT_CORE and VERIFIED_SOURCES "
        f"in orchestration/dbt_main.py to {_dbt_core_version()!r} and {source_hashes(GraphQueue)}; "
        "if not, adapt the scheduler or remove it (the test above shows its order)."
    )


def without_get_scores() -> type:
    """A dbt whose GraphQueue no longer has _get_scores."""
    members = {
        name: value
        for name, value in vars(GraphQueue).items()
        if name not in ("_get_scores", "__dict__", "__weakref__")
    }
    return type("GraphQueue", (), members)


def with_other_arguments() -> type:
    """A dbt whose _get_scores takes another argument."""

    def _get_scores(self, graph, selected=None):
        return GraphQueue._get_scores(self, graph)

    return type("GraphQueue", (GraphQueue,), {"_get_scores": _get_scores})


def with_other_source() -> type:
    """A dbt whose _get_scores has the same arguments but other code (here: the same scores,
    written differently)."""

    def _get_scores(self, graph):
        scores = GraphQueue._get_scores(self, graph)
        return dict(scores)

    return type("GraphQueue", (GraphQueue,), {"_get_scores": _get_scores})


def test_a_dbt_without_get_scores_is_left_alone_and_said_so(capsys):
    queue_class = without_get_scores()
    assert install_scheduler(queue_class) is False
    assert not hasattr(queue_class, "_get_scores")
    assert capsys.readouterr().err.splitlines() == [
        f"siteline-dbt: dbt-core {_dbt_core_version()}: GraphQueue has no _get_scores from "
        f"dbt-core {VERIFIED_DBT_CORE}'s, which the longest-path-first order was checked "
        "against (orchestration/dbt_main.py); dbt starts ready nodes in its own order. "
        "SITELINE_DBT_LONGEST_PATH_FIRST=0 asks for that order without this message."
    ]


@pytest.mark.parametrize(
    ("changed_dbt", "difference"),
    [
        (with_other_arguments, "GraphQueue._get_scores takes (self, graph, selected), not (self, graph)"),
        (with_other_source, "the source of GraphQueue._get_scores differs"),
    ],
)  # fmt: skip
def test_a_changed_dbt_keeps_its_own_order_and_says_so(capsys, changed_dbt, difference):
    queue_class = changed_dbt()
    assert install_scheduler(queue_class) is False
    assert drain_build(queue_class) == DBT_ORDER
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"siteline-dbt: dbt-core {_dbt_core_version()}: {difference} from")
    assert "dbt starts ready nodes in its own order" in err[0]


def test_the_setting_chooses_the_order(monkeypatch, capsys):
    monkeypatch.setenv("SITELINE_DBT_LONGEST_PATH_FIRST", "0")
    queue_class = new_queue_class()
    assert choose_order(queue_class) is False
    assert drain_build(queue_class) == DBT_ORDER
    monkeypatch.setenv("SITELINE_DBT_LONGEST_PATH_FIRST", "1")
    assert choose_order(queue_class) is True
    assert drain_build(queue_class) == LONGEST_PATH_ORDER
    assert capsys.readouterr().err == ""
