{#-
    What the residence snapshot reads: each citizen's residence as the population registry holds it, for the
    citizens loaded in this build's window (all of them while the snapshot does not exist yet). The snapshot only
    adds versions, it never closes a row for a citizen missing here, so reading only what changed is enough.
-#}
-- depends_on: {{ ref('int_load_batches') }}
{{ config(materialized='table', post_hook='analyze {{ this }}') }}

{%- set snapshot = adapter.get_relation(database=target.database, schema='snapshots',
                                        identifier='citizen_residence_snapshot') if execute else none %}
{%- set window = kho_batch_window() if snapshot is not none else none %}

select
    cccd,
    permanent_commune_code,
    temporary_commune_code,
    household_id,
    updated_at
from {{ ref('stg_population__citizens') }}
{% if window is not none %}where batch_id in {{ kho_window_batches(window) }}{% endif %}
