{#- `view_if_changed`: a view, built as dbt's `view` materialization builds it, except that a
    view whose definition and comments are already those of the model is left as it is.
    Returns the view's relation, as a materialization does.

    dbt's `view` replaces every view in every run (create beside it, rename both, comment,
    commit, drop the old one): about a dozen statements of dbt's time a view while the other
    threads hold the interpreter, and the staging views are the first step of every build's
    longest path. Here the model's SQL is first created as a temporary view, and PostgreSQL's
    own rendering of both definitions (pg_get_viewdef: comments, layout and `*` resolved) is
    compared, with the comments persist_docs would write, in one statement
    (macros/view_unchanged.sql). Equal: nothing is written ('UNCHANGED VIEW' in the run's
    results). Comments alone differ: they are written. Otherwise (or with --full-refresh, an
    enforced contract, a sql_header, no view yet) the view is replaced as dbt replaces it.
    A model chooses it with `materialized: view_if_changed` (the staging folder in
    dbt_project.yml); `materialized: view` is dbt's own. -#}

{% materialization view_if_changed, adapter='postgres' %}

    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='view') -%}
    {%- set grant_config = config.get('grants') -%}
    {%- set unchanged = {'definition': false, 'docs': false} -%}
    {%- if existing_relation is not none and existing_relation.is_view
        and not should_full_refresh()
        and not config.get('contract').enforced
        and config.get('sql_header', none) is none %}
        {%- set compared = run_query(view_unchanged_sql(target_relation, sql)) %}
        {%- do unchanged.update({
            'definition': compared.columns[0].values()[0],
            'docs': compared.columns[1].values()[0],
        }) %}
    {%- endif %}

    {%- if unchanged.definition %}
        {{ run_hooks(pre_hooks, inside_transaction=False) }}
        {{ run_hooks(pre_hooks, inside_transaction=True) }}
        {%- call noop_statement('main', 'UNCHANGED VIEW') %}{% endcall %}
        {%- if not unchanged.docs %}
            {%- do persist_docs(target_relation, model) %}
        {%- endif %}
        {%- do apply_grants(target_relation, grant_config, should_revoke=true) %}
        {{ run_hooks(post_hooks, inside_transaction=True) }}
        {{ adapter.commit() }}
        {{ run_hooks(post_hooks, inside_transaction=False) }}
        {{ return({'relations': [target_relation]}) }}
    {%- endif %}

    {#- dbt's view materialization (dbt-adapters, materializations/models/view.sql) -#}
    {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
    {%- set preexisting_intermediate_relation = load_cached_relation(intermediate_relation) -%}
    {%- set backup_relation_type = 'view' if existing_relation is none else existing_relation.type -%}
    {%- set backup_relation = make_backup_relation(target_relation, backup_relation_type) -%}
    {%- set preexisting_backup_relation = load_cached_relation(backup_relation) -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}
    {{ drop_relation_if_exists(preexisting_intermediate_relation) }}
    {{ drop_relation_if_exists(preexisting_backup_relation) }}
    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {% call statement('main') -%}
        {{ get_create_view_as_sql(intermediate_relation, sql) }}
    {%- endcall %}

    {%- if existing_relation is not none %}
        {%- set existing_relation = load_cached_relation(existing_relation) %}
        {%- if existing_relation is not none %}
            {{ adapter.rename_relation(existing_relation, backup_relation) }}
        {%- endif %}
    {%- endif %}
    {{ adapter.rename_relation(intermediate_relation, target_relation) }}

    {%- set should_revoke = should_revoke(existing_relation, full_refresh_mode=True) %}
    {%- do apply_grants(target_relation, grant_config, should_revoke=should_revoke) %}
    {%- do persist_docs(target_relation, model) %}
    {{ run_hooks(post_hooks, inside_transaction=True) }}
    {{ adapter.commit() }}
    {{ drop_relation_if_exists(backup_relation) }}
    {{ run_hooks(post_hooks, inside_transaction=False) }}
    {{ return({'relations': [target_relation]}) }}

{% endmaterialization %}
