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
    {{- var('kho_run_id') if var('kho_run_id') else invocation_id -}}
{%- endmacro %}

{% macro kho_as_of() -%}
    {%- set given = var('as_of') -%}
    {%- if given -%}
        {%- set day = modules.datetime.date.fromisoformat(given | string) -%}
    {%- else -%}
        {%- set day = modules.datetime.datetime.now(modules.pytz.timezone('Asia/Ho_Chi_Minh')).date() -%}
    {%- endif -%}
    date '{{ day.isoformat() }}'
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
    {#- {lo, hi, as_of, prev_as_of}: the discovered_seq window this build processes, and the as-of dates. -#}
    {%- set batches = ref('int_load_batches') -%}
    {%- set window = {'lo': 0, 'hi': 0, 'prev_as_of': none} -%}
    {%- if not execute -%}{{ return(window) }}{%- endif -%}
    {%- set last = kho_last_publication() -%}
    {%- set found = run_query(
        "select coalesce(max(discovered_seq), 0), to_regclass(" ~ kho_sql_string(batches | string) ~ ")::oid "
        ~ "from " ~ batches) -%}
    {%- set hi = found.rows[0][0] | int -%}
    {%- set same_batches = last['batches_oid'] is not none and (last['batches_oid'] | int) == (found.rows[0][1] | int) -%}
    {%- set lo = last['batch_seq'] if same_batches and last['batch_seq'] <= hi else 0 -%}
    {{ return({'lo': lo, 'hi': hi, 'prev_as_of': last['as_of'] if same_batches else none}) }}
{% endmacro %}

{% macro kho_window_batches(window) -%}
    (select batch_id from {{ ref('int_load_batches') }}
     where discovered_seq > {{ window['lo'] }} and discovered_seq <= {{ window['hi'] }})
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
