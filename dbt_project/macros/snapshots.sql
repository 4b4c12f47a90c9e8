{% macro default__snapshot_staging_table(strategy, source_sql, target_relation) -%}
    {#- dbt's snapshot compares its source with every current version of the snapshot (a scan and a hash of the whole
        table: ~3 s a night at a million citizens, whatever changed). When the snapshot ignores hard deletes, a key
        absent from the source keeps its current version untouched, so only the source's keys need comparing: the
        target becomes the current versions of those keys (read by the snapshot's partial index on the unique key,
        see kho_snapshot_indexes), and dbt's own SQL does the rest unchanged. -#}
    {%- set keys = strategy.unique_key if strategy.unique_key is sequence and strategy.unique_key is not string
                   else [strategy.unique_key] -%}
    {%- if strategy.hard_deletes in (none, 'ignore') and not config.get('dbt_valid_to_current') -%}
        {%- set columns = config.get('snapshot_table_column_names') or get_snapshot_table_column_names() -%}
        {%- set restricted -%}
            (select * from {{ target_relation }}
              where ({{ keys | join(', ') }}) in (select {{ keys | join(', ') }} from ({{ source_sql }}) as kho_source_keys)
                and {{ columns.dbt_valid_to }} is null) as kho_current_versions
        {%- endset -%}
        {{ dbt.default__snapshot_staging_table(strategy, source_sql, restricted) }}
    {%- else -%}
        {{ dbt.default__snapshot_staging_table(strategy, source_sql, target_relation) }}
    {%- endif -%}
{%- endmacro %}

{% macro kho_snapshot_indexes(keys) -%}
    {#- A snapshot's post-hook: the indexes its nightly merge reads by (the current version of a key; a version by
        its id, which the merge closes). -#}
    create index if not exists {{ this.identifier }}__current on {{ this }} ({{ keys | join(', ') }})
        where dbt_valid_to is null;
    create index if not exists {{ this.identifier }}__scd_id on {{ this }} (dbt_scd_id);
    analyze {{ this }}
{%- endmacro %}
