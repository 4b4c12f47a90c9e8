{#-
    Every committed load batch, numbered in the order builds discovered it (see macros/kho_build.sql). A build
    discovers once: a retried task of the same run adds nothing, so every model of a run sees the same batches.
    Never rebuilt by --full-refresh: its numbering is what publications' watermarks refer to.
-#}
{{ config(materialized='incremental', unique_key='batch_id', full_refresh=false, on_schema_change='fail') }}

with

ledger as (

    select batch_id, registry, entity, finished_at from {{ source('kho', 'load_ledger') }}

),

undiscovered as (

    select * from ledger
    {% if is_incremental() %}
    where not exists (select from {{ this }} as seen where seen.batch_id = ledger.batch_id)
      and not exists (select from {{ this }} as seen where seen.discovered_by_run = {{ kho_sql_string(kho_run_id()) }})
    {% endif %}

)

select
    batch_id,
    registry,
    entity,
    finished_at,
    {% if is_incremental() %}(select coalesce(max(discovered_seq), 0) from {{ this }}){% else %}0{% endif %}
        + row_number() over (order by batch_id) as discovered_seq,
    {{ kho_sql_string(kho_run_id()) }}::text as discovered_by_run,
    now() as discovered_at

from undiscovered
