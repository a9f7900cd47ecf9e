{#- Data tests read every row of what they test, as dbt documents, unless a test opts in to
    the rows changed since the last run whose tests all passed. The opt-in is the test's own,
    next to it in the YAML, in dbt's `where` test config:

        - name: page_view_id
          data_tests:
            - unique_by_index: {config: {where: __changed_rows__}}
            - not_null: {config: {where: __changed_rows__}}

    `__changed_rows__` is a placeholder: dbt renders `where` when it parses the YAML, without
    the project's macros, and documents get_where_subquery (below) as the place to fill it in
    when the test runs. It may stand beside other conditions ("__changed_rows__ and ...").
    A test without it (a test an analyst adds, `unique`, any other) reads everything.

    How a model's changed rows are found is the model's config; a test that opts in on a
    model without it stops with an error naming the model:

        config:
          meta:
            tests_read: {by: device, column: visitor_id}      # devices changed since
            tests_read: {by: load, column: load_id, raw: raw_collector}   # loads since

    The changed rows are the rows that changed (or arrived) since the last `dbt build` or
    `dbt test` that ran every test and passed them all (its start is the watermark, kept in
    intermediate.int_incremental_manifest as 'data_tests'); rows that did not change passed then. A
    key of these models never repeats across devices or loads (a page view, visit or event id
    belongs to one device; dlt merges a load's events on their id), so `unique` over the
    changed rows, `not_null`, `accepted_values` and `relationships` from them stay exact as
    long as nothing writes to the tables behind the models' back. An opted-in test reads
    everything with --full-refresh, without a watermark, when the model was built whole since
    (a full refresh, a configuration change), or when the last passing run is 30 days old
    (older changes are pruned).

    Loads are tracked by id, not by time (macros/loads_read.sql): every dbt invocation notes
    the raw loads it can see when it starts (on-run-start: note_tested_loads), and a run
    that passes every test marks those as tested. An opted-in test reads the loads not
    marked yet. -#}

{#- Returns what a generic test reads (dbt puts it where the test's macro says `model`): the
    relation itself without a `where` config, else the subquery dbt's own macro returns, with
    `__changed_rows__` in the `where` replaced by the changed-rows condition (or by `true`
    when the test must read everything). -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') or '' %}
    {%- if '__changed_rows__' in where %}
        {%- set where = where | replace(
            '__changed_rows__', '(' ~ (changed_rows_condition(relation) or 'true') ~ ')'
        ) %}
    {%- endif %}
    {%- if where %}
        {#- tests/unique_by_index.sql (tested_relation) reads the relation back from this form -#}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') %}
    {%- endif %}
    {%- do return(relation) %}
{%- endmacro %}


{#- Returns the `tests_read` meta of the model built as `relation` (none without one). -#}
{% macro tests_read_meta(relation) -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' %}
        {%- if node.alias == relation.identifier and node.schema == relation.schema %}
            {%- do return(node.config.meta.get('tests_read')) %}
        {%- endif %}
    {%- endfor %}
    {%- do return(none) %}
{%- endmacro %}


{#- Returns the SQL condition that keeps the rows of `relation` changed since the last passing
    run (its model's `tests_read` meta says how they are found), or '' when an opted-in test
    must read every row (see above). -#}
{% macro changed_rows_condition(relation) -%}
    {%- if not execute or run_query is not defined %}{% do return('') %}{% endif %}
    {%- set rule = tests_read_meta(relation) %}
    {%- if not rule %}
        {%- do exceptions.raise_compiler_error(
            relation ~ ': a data test of this model reads `where: __changed_rows__`, but the model '
            ~ 'does not say how its changed rows are found; add `meta: {tests_read: {by: device, '
            ~ 'column: ...}}` or `{by: load, column: load_id, raw: ...}` to its config '
            ~ '(macros/test_scopes.sql), or remove __changed_rows__ from the test'
        ) %}
    {%- endif %}
    {%- if flags.FULL_REFRESH %}{% do return('') %}{% endif %}
    {#- the watermark, and whether the model was built whole since (its rows all new) -#}
    {%- if not relation_exists(incremental_manifest()) %}{% do return('') %}{% endif %}
    {%- set watermark = run_query(
        "select t.change_id, "
        ~ "coalesce(m.full_at > coalesce(t.full_at, t.updated_at), false) from "
        ~ incremental_manifest() ~ " as t "
        ~ "left join " ~ incremental_manifest() ~ " as m on m.model_name = '" ~ relation.identifier
        ~ "' where t.model_name = 'data_tests' and t.updated_at > now() - interval '30 days'"
    ) %}
    {%- if watermark.rows | length == 0 or watermark.rows[0][1] %}{% do return('') %}{% endif %}
    {%- set change_id = watermark.rows[0][0] %}
    {%- if rule.by == 'device' %}
        {#- the rows of the changed devices, probed device by device through the model's
            (site_id, device) index and read by row id, as scoped models read (macros/incremental/scoped_rows.sql:
            an IN over the pairs was planned as a scan of the whole table) -#}
        {%- do return(
            'ctid = any (array(select scoped.ctid from (select distinct c.site_id, c.device_key from '
            ~ scope_changes('device') ~ ' as c where c.change_id > ' ~ (change_id or 0) ~ ') as scope '
            ~ 'cross join lateral (select t.ctid from ' ~ relation ~ ' as t where t.site_id = scope.site_id '
            ~ 'and t.' ~ rule.column ~ ' = scope.device_key offset 0) as scoped))'
        ) %}
    {%- elif rule.by == 'load' %}
        {#- loads no passing run has tested yet (macros/loads_read.sql); literals, so the planner
            probes the raw table's load-id index -#}
        {%- set loads = run_query(
            "select l.load_id from " ~ rule.raw ~ "._dlt_loads as l where l.status = 0 "
            ~ "and not exists (select 1 from " ~ loads_read() ~ " as t where t.reader = 'data_tests' "
            ~ "and t.raw_schema = '" ~ rule.raw ~ "' and t.load_id = l.load_id and t.done)"
        ) if relation_exists(rule.raw ~ '._dlt_loads') and relation_exists(loads_read()) else none %}
        {%- set ids = loads.columns[0].values() | list if loads else [] %}
        {%- do return(rule.column ~ ' in (' ~ sql_literals(ids) ~ ')') %}
    {%- endif %}
    {%- do exceptions.raise_compiler_error(
        relation ~ ': meta tests_read by ' ~ rule.by ~ ' is not known; by: device or by: load '
        ~ '(macros/test_scopes.sql)'
    ) %}
{%- endmacro %}


{#- Returns whether the relation `name` (schema.name) exists. -#}
{% macro relation_exists(name) -%}
    {%- set found = run_query("select to_regclass('" ~ name ~ "') is not null") %}
    {%- do return(found.columns[0].values()[0]) %}
{%- endmacro %}


{#- on-run-start: the raw loads this invocation can see (tested once it passes every test) -#}
{% macro note_tested_loads() -%}
    {%- for raw in ['raw_collector', 'raw_logfiles'] %}
    do $$
    begin
        if to_regclass('{{ raw }}._dlt_loads') is not null then
            insert into {{ loads_read() }} (reader, raw_schema, load_id, seen_at, done)
            select 'data_tests', '{{ raw }}', l.load_id, '{{ run_started_at }}'::timestamptz, false
            from {{ raw }}._dlt_loads as l
            where l.status = 0
            on conflict (reader, raw_schema, load_id) do nothing;
        end if;
    end
    $$;
    {%- endfor %}
{%- endmacro %}


{#- on-run-end: a run that ran every data test and passed them all moves the data tests'
    watermark (the row data_tests of int_incremental_manifest) to the newest visitor change
    (the changes this run logged were tested by it: the tests run after the models) and marks
    the loads it saw at its start as tested. -#}
{% macro data_tests_done() -%}
    {%- set finished = results if execute else [] %}
    {%- set nodes = graph.nodes.values() if execute else [] %}
    {%- set all_tests = nodes | selectattr('resource_type', 'equalto', 'test') | list %}
    {%- set ran = finished | selectattr('node.resource_type', 'equalto', 'test') | list %}
    {%- set passed = ran | selectattr('status', 'equalto', 'pass') | list %}
    {%- set failed_models = finished | selectattr('status', 'in', ['error', 'skipped']) | list %}
    {%- set all_passed = all_tests | length > 0 and passed | length == all_tests | length %}
    {% if execute and all_passed and not failed_models -%}
        -- full_at: when this passing run ended; a model built whole before then was tested
        -- whole by it (or by an earlier passing run), one built whole after must be again
        insert into {{ incremental_manifest() }} as w (
            model_name, scope, config_hash, change_id, full_at, updated_at
        )
        select
            'data_tests',
            'device',
            '',
            (select coalesce(max(c.change_id), 0) from {{ scope_changes('device') }} as c),
            now(),
            '{{ run_started_at }}'::timestamptz
        on conflict (model_name) do update
        set change_id = excluded.change_id, full_at = excluded.full_at, updated_at = excluded.updated_at;
        update {{ loads_read() }} set done = true
        where reader = 'data_tests' and not done and seen_at <= '{{ run_started_at }}'::timestamptz
    {%- endif %}
{%- endmacro %}
