{#-
    The golden citizen record: one row per CCCD of the population registry, with what the other registries say
    about the person (docs/datasets.md).

    Incremental (merge by cccd): the build recomputes the citizens touched by the batches of its window — their
    own record, a link to them from another registry (and the citizen a changed link pointed at before), their
    coverage or membership — and those whose health cover or death starts or ends between the last publication's
    as-of date and this build's.
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key='cccd',
    on_schema_change='fail',
) }}

-- depends_on: {{ ref('int_load_batches') }}
-- depends_on: {{ ref('stg_population__household_members') }}
-- depends_on: {{ ref('stg_insurance__coverage_periods') }}
-- depends_on: {{ ref('stg_insurance__participants') }}
{%- if is_incremental() %}{% set window = kho_batch_window() %}{% endif %}

with

{% if is_incremental() %}
affected as (

    select cccd from {{ ref('stg_population__citizens') }} where batch_id in {{ kho_window_batches(window) }}
    union
    select cccd from {{ ref('int_citizen_identity') }} where changed_seq > {{ window['lo'] }} and cccd is not null
    union
    select previous_cccd from {{ ref('int_citizen_identity') }}
    where changed_seq > {{ window['lo'] }} and previous_cccd is not null
    union
    select cccd from {{ ref('stg_population__household_members') }}
    where batch_id in {{ kho_window_batches(window) }}
    union
    select participants.cccd
    from {{ ref('stg_insurance__coverage_periods') }} as coverage
    join {{ ref('stg_insurance__participants') }} as participants
        on participants.social_insurance_code = coverage.social_insurance_code
    where coverage.batch_id in {{ kho_window_batches(window) }}
       or {{ kho_as_of_moved(window, 'coverage.valid_from') }}
       or {{ kho_as_of_moved(window, 'coverage.valid_to + 1') }}
    union
    select cccd from {{ ref('int_citizen_deaths') }} where {{ kho_as_of_moved(window, 'date_of_death') }}

),
{% endif %}

citizens as (

    select * from {{ ref('stg_population__citizens') }}
    {% if is_incremental() %}where cccd in (select cccd from affected){% endif %}

),

links as (

    select cccd, registry, role, match_quality
    from {{ ref('int_citizen_identity') }}
    where cccd in (select cccd from citizens)

),

known as (

    select
        cccd,
        array_agg(distinct registry order by registry) as other_registries,
        min(case match_quality when 'conflicting' then 0 when 'normalised' then 1 when 'exact' then 2 end)
            filter (where role in ('participant', 'child')) as worst_name_match
    from links
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
        array(
            select distinct registry
            from unnest(array_append(coalesce(known.other_registries, '{}'::text[]), 'population')) as registry
            order by registry
        ) as known_to_registries,
        case known.worst_name_match when 0 then 'conflicting' when 1 then 'normalised' when 2 then 'exact' end
            as name_match_quality,
        citizens.updated_at

    from citizens
    {{ commune_units_join('citizens.permanent_commune_code') }}
    left join {{ ref('int_citizen_deaths') }} as deaths on deaths.cccd = citizens.cccd
    left join {{ ref('int_household_members_current') }} as membership on membership.cccd = citizens.cccd
    left join {{ ref('int_health_cover') }} as cover on cover.cccd = citizens.cccd
    left join known on known.cccd = citizens.cccd

)

select * from final
