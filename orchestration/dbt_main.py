"""``siteline-dbt``: dbt's command line, starting the node on the longest remaining path first.

dbt hands its threads the ready nodes in order of their depth in the graph, ties by name. In
a ``dbt build`` a model's tests sit between it and the models above it, so the tests of a
model that nothing waits for (fct_page_views) come before the deepest models, and among
models of one depth ``customer_daily_activity`` comes before ``int_customer_activity``,
which the last model of the build waits for. With 6 threads on 2 cores the node started
last also gets the least of the processors: at 10M events ``int_customer_activity`` started
about 1 s after the tests it waited for had passed, behind five models and a test nothing
after them waited for.

Here a ready node's priority is the length of the longest path from it to the end of the
build, counting a model as 1 and any other node (a test, a seed, a hook) as a quarter: the
models, not the tests, are what the next nodes wait for. Ties keep dbt's order (by name).
Everything else is dbt's own command line (``dbt.cli.main``); Siteline runs dbt through
this everywhere (``siteline dbt``, Dagster's dbt resource, the manifest parse).

A ``build`` or ``run`` that is not a full refresh also reads the models' indexes ahead, while
dbt starts (:func:`prefetch_indexes`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

MODEL_SCHEMAS = ["intermediate", "web", "crm"]
# The indexes of the model tables, the largest tables' first, up to `budget` bytes in all,
# handed to the kernel to read ahead (pg_prewarm's 'prefetch': posix_fadvise WILLNEED).
PREFETCH = """
select count(pg_prewarm(ranked.indexrelid, 'prefetch'))
from (
    select
        i.indexrelid,
        sum(pg_relation_size(i.indexrelid)) over (
            order by pg_relation_size(i.indrelid) desc, i.indexrelid
        ) as running
    from pg_index as i
    inner join pg_class as t on i.indrelid = t.oid
    inner join pg_namespace as n on t.relnamespace = n.oid
    where n.nspname = any(%(schemas)s)
) as ranked
where ranked.running <= %(budget)s
"""

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


def prefetch_budget() -> int:
    """Bytes of index to read ahead: an eighth of this machine's memory (the warehouse's page
    cache when it runs here, as the embedded one does), or ``SITELINE_DBT_PREFETCH_MB``
    (0 turns it off)."""
    configured = os.environ.get("SITELINE_DBT_PREFETCH_MB", "").strip()
    if configured:
        return int(configured) * 2**20
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 8


def prefetch(params: dict[str, str], budget: int) -> int:
    """Hand the model tables' indexes to the kernel to read ahead; returns how many. Needs
    the pg_prewarm extension (created here where the role may; else nothing is read)."""
    import psycopg

    with psycopg.connect(**params, autocommit=True, connect_timeout=5) as conn:
        conn.execute("create extension if not exists pg_prewarm")
        return conn.execute(PREFETCH, {"schemas": MODEL_SCHEMAS, "budget": budget}).fetchone()[0]


def prefetch_indexes(args: list[str]) -> threading.Thread | None:
    """For a ``build`` or ``run`` that is not a full refresh: read the model tables' indexes
    ahead in a thread, while dbt imports, parses and builds the staging views (about 3 s).

    An incremental build inserts index entries at random places of tables of millions of rows
    and probes them one key at a time; after a full build the pages are mostly not cached.
    At 10M events the sessionisation's insert spent 1.2 s reading index pages one by one
    (76 us each from this machine's disk), fct_page_views' 1.4 s and fct_sessions' 1.0 s; the
    whole 2.9 GB of their indexes reads ahead in 1.5 s (0.2 s when cached). Errors (no
    pg_prewarm, no right to create it) leave the build as it was."""
    if not {"build", "run"} & set(args) or "--full-refresh" in args:
        return None
    budget = prefetch_budget()
    if budget <= 0 or not os.environ.get("SITELINE_PG_HOST"):
        return None
    # the connection profiles.yml makes, from the same variables
    params = {
        key: os.environ.get(var, "")
        for key, var in [
            ("host", "SITELINE_PG_HOST"), ("port", "SITELINE_PG_PORT"),
            ("user", "SITELINE_PG_USER"), ("dbname", "SITELINE_PG_DBNAME"),
            ("password", "DBT_ENV_SECRET_PG_PASSWORD"),
        ]
    }  # fmt: skip

    def run() -> None:
        # a hint to the kernel: whatever goes wrong, the build goes on without it
        with contextlib.suppress(Exception):
            prefetch(params, budget)

    thread = threading.Thread(target=run, name="siteline-prefetch", daemon=True)
    thread.start()
    return thread


def main() -> None:
    prefetch_indexes(sys.argv[1:])
    install_scheduler()
    from dbt.cli.main import cli

    sys.exit(cli())


if __name__ == "__main__":
    main()
