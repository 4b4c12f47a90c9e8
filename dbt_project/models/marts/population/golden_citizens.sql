{#-
    The golden citizen record: one row per CCCD of the population registry, with what the other registries say
    about the person (docs/datasets.md).

    Incremental (merge by cccd): the build recomputes the citizens of int_changed_citizens — touched by the batches
    of its window through their own record, a link from another registry (or a link that moved away from them), a
    coverage period or a membership — and those whose cover or death starts or ends between the two as-of dates.
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key='cccd',
    on_schema_change='fail',
) }}

-- depends_on: {{ ref('int_load_batches') }}
-- depends_on: {{ ref('int_changed_citizens') }}
-- depends_on: {{ ref('int_health_cover') }}
-- depends_on: {{ ref('int_household_members_current') }}
{%- set narrowed = is_incremental() and not kho_window_is_everything() %}
{%- set scope = ('select cccd from ' ~ ref('int_changed_citizens')) if narrowed else none %}
{%- set only_changed = ('cccd in (' ~ scope ~ ')') if scope else 'true' %}

with

citizens as (

    select * from {{ ref('stg_population__citizens') }} where {{ only_changed }}

),

deaths as (

    select * from {{ ref('int_citizen_deaths') }} where {{ only_changed }}

),

membership as (

    -- int_household_members_current and int_health_cover, computed only for the citizens in scope
    {{ kho_current_membership(scope) }}

),

cover as (

    {{ kho_health_cover(scope) }}

),

known as (

    -- Which other registries mention the person, and the worst match of a name they give. Flags, not
    -- array_agg(distinct ...): one hash aggregate over the links, no sort.
    select
        cccd,
        bool_or(registry = 'business') as in_business,
        bool_or(registry = 'civil_status') as in_civil_status,
        bool_or(registry = 'insurance') as in_insurance,
        min(case match_quality when 'conflicting' then 0 when 'normalised' then 1 when 'exact' then 2 end)
            filter (where role in ('participant', 'child')) as worst_name_match
    from {{ ref('int_citizen_identity') }}
    where cccd is not null and {{ only_changed }}
    group by cccd

),

final as (

    select
        citizens.cccd,
        citizens.full_name,
        citizens.date_of_birth,
        citizens.sex,
        citizens.ethnicity,
        citizens.birth_province_code,
        citizens.hometown_province_code,
        (deaths.cccd is null or deaths.date_of_death > {{ kho_as_of() }}) as is_alive,
        deaths.date_of_death,
        deaths.death_source,
        citizens.permanent_commune_code,
        {{ commune_units(kho_local_date('citizens.updated_at')) }},
        membership.household_id,
        membership.relation_to_head,
        coalesce(cover.has_active_health_cover, false) as has_active_health_cover,
        array_remove(array[
            case when known.in_business then 'business' end,
            case when known.in_civil_status then 'civil_status' end,
            case when known.in_insurance then 'insurance' end,
            'population'
        ], null) as known_to_registries,
        case known.worst_name_match when 0 then 'conflicting' when 1 then 'normalised' when 2 then 'exact' end
            as name_match_quality,
        citizens.updated_at

    from citizens
    {{ commune_units_join('citizens.permanent_commune_code') }}
    left join deaths on deaths.cccd = citizens.cccd
    left join membership on membership.cccd = citizens.cccd
    left join cover on cover.cccd = citizens.cccd
    left join known on known.cccd = citizens.cccd

)

select * from final
