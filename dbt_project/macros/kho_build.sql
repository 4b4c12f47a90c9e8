{#
    The build's parameters and its incremental window (docs/datasets.md, "Incremental builds").

    Incremental models do not trust max(_batch_id): batch ids come from one sequence but batches commit in any
    order, so a batch with a smaller id can commit after a larger one was already modelled. Instead
    int_load_batches numbers every committed ledger batch in the order the builds *discovered* it
    (discovered_seq), and a build processes the batches discovered after the last publication:
    lo = kho.publications' latest batch_seq (0 when none, or when int_load_batches was rebuilt since),
    hi = the largest discovered_seq now. Every incremental model of one build uses the same window, and a build
    that fails before publishing leaves lo where it was, so the next build covers its batches again (merges are
    idempotent).
#}

{% macro kho_sql_string(value) -%}
    '{{ value | string | replace("'", "''") }}'
{%- endmacro %}

{% macro kho_run_id() -%}
    {{- env_var('KHO_BUILD_RUN_ID', '') or invocation_id -}}
{%- endmacro %}

{% macro kho_as_of() -%}
    {#- Only read when the build executes: at parse time (dbt ls, Cosmos rendering the DAG) the value may not exist
        yet, or be a template Airflow fills in later. -#}
    {%- if not execute -%}
        current_date
    {%- else -%}
        {%- set given = env_var('KHO_BUILD_AS_OF', '') -%}
        {%- if given -%}
            {%- set day = modules.datetime.date.fromisoformat(given | string) -%}
        {%- else -%}
            {%- set day = modules.datetime.datetime.now(modules.pytz.timezone('Asia/Ho_Chi_Minh')).date() -%}
        {%- endif -%}
        date '{{ day.isoformat() }}'
    {%- endif -%}
{%- endmacro %}

{% macro kho_reform_date() -%}
    date '2025-07-01'
{%- endmacro %}

{% macro kho_local_date(ts) -%}
    ({{ ts }} at time zone 'Asia/Ho_Chi_Minh')::date
{%- endmacro %}

{% macro kho_last_publication() %}
    {#- The latest publication's watermark, its as-of date and the int_load_batches table it was counted in. -#}
    {%- set empty = {'batch_seq': 0, 'as_of': none, 'batches_oid': none} -%}
    {%- if not execute -%}{{ return(empty) }}{%- endif -%}
    {%- set exists = run_query("select to_regclass('kho.publications') is not null") -%}
    {%- if not exists.columns[0].values()[0] -%}{{ return(empty) }}{%- endif -%}
    {%- set found = run_query(
        "select batch_seq, as_of::text, batches_oid from kho.publications order by publication_id desc limit 1") -%}
    {%- if found.rows | length == 0 -%}{{ return(empty) }}{%- endif -%}
    {%- set row = found.rows[0] -%}
    {{ return({'batch_seq': row[0] | int, 'as_of': row[1], 'batches_oid': row[2]}) }}
{% endmacro %}

{% macro kho_batch_window() %}
    {#- {lo, hi, batches, prev_as_of}: the discovered_seq window this build processes, its batch ids (written into
        the SQL as constants, so the planner estimates them from the raw tables' statistics), and the last
        publication's as-of date. -#}
    {%- set batches = ref('int_load_batches') -%}
    {%- set window = {'lo': 0, 'hi': 0, 'batches': [], 'prev_as_of': none} -%}
    {%- if not execute -%}{{ return(window) }}{%- endif -%}
    {%- set last = kho_last_publication() -%}
    {%- set found = run_query(
        "select coalesce(max(discovered_seq), 0), to_regclass(" ~ kho_sql_string(batches | string) ~ ")::oid "
        ~ "from " ~ batches) -%}
    {%- set hi = found.rows[0][0] | int -%}
    {%- set same_batches = last['batches_oid'] is not none and (last['batches_oid'] | int) == (found.rows[0][1] | int) -%}
    {%- set lo = last['batch_seq'] if same_batches and last['batch_seq'] <= hi else 0 -%}
    {%- set ids = run_query("select batch_id from " ~ batches ~ " where discovered_seq > " ~ lo
                            ~ " and discovered_seq <= " ~ hi ~ " order by batch_id") -%}
    {{ return({'lo': lo, 'hi': hi, 'batches': ids.columns[0].values() | map('int') | list,
               'prev_as_of': last['as_of'] if same_batches else none}) }}
{% endmacro %}

{% macro kho_window_is_everything() %}
    {#- True when this build must recompute everything: a full refresh, or no publication yet (every batch is in
        the window). The incremental models then do not narrow to the window, and the lists of what changed, which
        nobody reads, are left empty. -#}
    {{ return(flags.FULL_REFRESH or kho_batch_window()['lo'] == 0) }}
{% endmacro %}

{% macro kho_window_batches(window) -%}
    ({{ window['batches'] | join(', ') if window['batches'] else 'null' }})
{%- endmacro %}

{% macro kho_scope_filter(window, cccd_column) -%}
    {#- In an incremental build, the rows of a source loaded in the window or pointing at a citizen whose record
        was (the model defines `changed_citizens`); nothing in a full build. -#}
    {%- if window is not none and window['lo'] > 0 -%}
        where batch_id in {{ kho_window_batches(window) }} or {{ cccd_column }} in (select cccd from changed_citizens)
    {%- endif -%}
{%- endmacro %}

{% macro kho_as_of_moved(window, date_expr) -%}
    {#- True for a date between the previous publication's as-of date and this build's (either way round): the
        state it starts or ends changed between the two as-of dates without any new batch. -#}
    {%- if window['prev_as_of'] -%}
        ({{ date_expr }} > least(date '{{ window['prev_as_of'] }}', {{ kho_as_of() }})
         and {{ date_expr }} <= greatest(date '{{ window['prev_as_of'] }}', {{ kho_as_of() }}))
    {%- else -%}
        false
    {%- endif -%}
{%- endmacro %}

{% macro postgres__snapshot_get_time() -%}
    {#- Snapshot times as timestamptz, like every timestamp in the warehouse (dbt-postgres' default is a timestamp
        without time zone, which the residence snapshot's updated_at would be compared with). -#}
    now()
{%- endmacro %}

{% macro kho_changed_rows(column, changed='int_changed_citizens') -%}
    {#- A data test's `where` on an incremental mart: in an incremental build only the rows the build recomputed
        (keyed by citizen, so uniqueness within them is uniqueness overall: the merge keeps one row per key);
        everything when the build recomputed everything (a full refresh, or the '*' of a first build). -#}
    {%- set changed_rows = target.database ~ '.intermediate.' ~ changed -%}
    {%- if flags.FULL_REFRESH or not execute -%}
        true
    {%- elif run_query("select exists (select from " ~ changed_rows ~ " where cccd = '*')").columns[0].values()[0] -%}
        true
    {%- else -%}
        {{ column }} in (select cccd from {{ changed_rows }})
    {%- endif -%}
{%- endmacro %}

{% macro default__get_where_subquery(relation) -%}
    {#- dbt's `where` for data tests, plus one form of ours: `kho_changed_rows <column> [<changed model>]` scopes the
        test with kho_changed_rows (dbt does not render project macros in a test's config). -#}
    {%- set where = config.get('where', '') -%}
    {%- if where and where.startswith('kho_changed_rows ') -%}
        {%- set where = kho_changed_rows(*where.split()[1:]) -%}
    {%- endif -%}
    {%- if where -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
