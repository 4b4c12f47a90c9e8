{#-
    Households of the population registry with their composition as the memberships show it (docs/datasets.md).

    Incremental (merge by household_id): households whose own record or a membership was loaded in this build's
    window, and the households of citizens whose death or status changed.
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key='household_id',
    on_schema_change='fail',
) }}

-- depends_on: {{ ref('int_load_batches') }}
-- depends_on: {{ ref('stg_population__citizens') }}
-- depends_on: {{ ref('stg_civil_status__deaths') }}
-- depends_on: {{ ref('int_citizen_identity') }}
-- depends_on: {{ ref('stg_population__household_members') }}
-- depends_on: {{ ref('int_citizen_deaths') }}
{%- if is_incremental() %}{% set window = kho_batch_window() %}{% endif %}

with

{% if is_incremental() %}
changed_lives as (

    select cccd from {{ ref('stg_population__citizens') }} where batch_id in {{ kho_window_batches(window) }}
    union
    select cccd from {{ ref('stg_civil_status__deaths') }} where batch_id in {{ kho_window_batches(window) }}
    union
    select previous_cccd from {{ ref('int_citizen_identity') }}
    where role = 'deceased' and changed_seq > {{ window['lo'] }} and previous_cccd is not null
    union
    select cccd from {{ ref('int_citizen_deaths') }} where {{ kho_as_of_moved(window, 'date_of_death') }}

),

affected as (

    select household_id from {{ ref('stg_population__households') }}
    where batch_id in {{ kho_window_batches(window) }}
    union
    select household_id from {{ ref('stg_population__household_members') }}
    where batch_id in {{ kho_window_batches(window) }}
    union
    select household_id from {{ ref('stg_population__household_members') }}
    where cccd in (select cccd from changed_lives)

),
{% endif %}

households as (

    select * from {{ ref('stg_population__households') }}
    {% if is_incremental() %}where household_id in (select household_id from affected){% endif %}

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
    left join {{ ref('int_households_composed') }} as composed on composed.household_id = households.household_id

)

select * from final
