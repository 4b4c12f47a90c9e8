{#-
    Households of the population registry with their composition as the memberships show it (docs/datasets.md).

    Incremental (merge by household_id): households whose own record or a membership was loaded in this build's
    window, and the households of the build's changed citizens (int_changed_citizens: a death, a status change).
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key='household_id',
    on_schema_change='fail',
) }}

-- depends_on: {{ ref('int_load_batches') }}
-- depends_on: {{ ref('int_changed_citizens') }}
-- depends_on: {{ ref('stg_population__household_members') }}
{%- set narrowed = is_incremental() and not kho_window_is_everything() %}
{%- if narrowed %}{% set window = kho_batch_window() %}{% endif %}

with

{% if narrowed %}
affected as (

    select household_id from {{ ref('stg_population__households') }}
    where batch_id in {{ kho_window_batches(window) }}
    union
    select household_id from {{ ref('stg_population__household_members') }}
    where batch_id in {{ kho_window_batches(window) }}
       or cccd in (select cccd from {{ ref('int_changed_citizens') }})

),
{% endif %}

households as (

    select * from {{ ref('stg_population__households') }}
    {% if narrowed %}where household_id in (select household_id from affected){% endif %}

),

composed as (

    select * from {{ ref('int_households_composed') }}
    {% if narrowed %}where household_id in (select household_id from affected){% endif %}

),

final as (

    select
        households.household_id,
        households.head_cccd,
        households.member_count,
        households.commune_code,
        {{ commune_units(kho_local_date('households.updated_at')) }},
        households.address_line,
        coalesce(composed.current_living_members, 0) as current_living_members,
        coalesce(composed.current_heads, 0) as current_heads,
        households.updated_at

    from households
    {{ commune_units_join('households.commune_code') }}
    left join composed on composed.household_id = households.household_id

)

select * from final
