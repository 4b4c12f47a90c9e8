{#-
    Every CCCD another registry mentions, linked to the population registry's citizen, with a match quality
    (docs/datasets.md): one row per (registry, entity, record, role). A record always yields the same roles (a
    birth without a registered father keeps its father row, with a null cccd), so links never vanish.

    Incremental: the links of records loaded in this build's window, and the links pointing at citizens whose
    record changed, are recomputed. previous_cccd keeps the CCCD a link had at the last publication, so the golden
    record can also refresh the citizen a link moved away from.
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key=['registry', 'entity', 'record_key', 'role'],
    on_schema_change='fail',
    indexes=[{'columns': ['cccd']}, {'columns': ['changed_seq']}],
) }}

-- depends_on: {{ ref('int_load_batches') }}
-- depends_on: {{ ref('stg_population__citizens') }}
{%- if is_incremental() %}{% set window = kho_batch_window() %}{% endif %}

with

citizens as (

    select cccd, full_name, date_of_birth, sex from {{ ref('stg_population__citizens') }}

),

births as (

    select * from {{ ref('stg_civil_status__births') }}

),

marriages as (

    select * from {{ ref('stg_civil_status__marriages') }}

),

links as (

    select 'insurance'::text as registry, 'participants'::text as entity, social_insurance_code as record_key,
           'participant'::text as role, cccd, full_name as name_given, null::date as date_of_birth_given,
           null::text as sex_given, batch_id
    from {{ ref('stg_insurance__participants') }}
    union all
    select 'civil_status', 'births', registration_id, 'child', child_cccd, child_full_name, date_of_birth,
           child_sex, batch_id
    from births
    union all
    select 'civil_status', 'births', registration_id, 'mother', mother_cccd, null, null, null, batch_id
    from births
    union all
    select 'civil_status', 'births', registration_id, 'father', father_cccd, null, null, null, batch_id
    from births
    union all
    select 'civil_status', 'deaths', registration_id, 'deceased', cccd, null, null, null, batch_id
    from {{ ref('stg_civil_status__deaths') }}
    union all
    select 'civil_status', 'marriages', registration_id, 'husband', husband_cccd, null, husband_date_of_birth,
           null, batch_id
    from marriages
    union all
    select 'civil_status', 'marriages', registration_id, 'wife', wife_cccd, null, wife_date_of_birth, null,
           batch_id
    from marriages
    union all
    select 'business', 'enterprises', enterprise_code, 'legal_representative', legal_rep_cccd, null, null, null,
           batch_id
    from {{ ref('stg_business__enterprises') }}

),

scope as (

    {% if is_incremental() %}
    select * from links where batch_id in {{ kho_window_batches(window) }}
    union
    select * from links
    where cccd in (
        select cccd from {{ ref('stg_population__citizens') }} where batch_id in {{ kho_window_batches(window) }}
    )
    {% else %}
    select * from links
    {% endif %}

),

scored as (

    select
        scope.registry,
        scope.entity,
        scope.record_key,
        scope.role,
        scope.cccd,
        scope.name_given,
        scope.date_of_birth_given,
        scope.sex_given,
        case
            when scope.cccd is null then null
            when citizens.cccd is null then 'unmatched'
            when scope.date_of_birth_given is distinct from citizens.date_of_birth
                 and scope.date_of_birth_given is not null then 'conflicting'
            when scope.sex_given is distinct from citizens.sex and scope.sex_given is not null then 'conflicting'
            when scope.name_given is not null
                 and {{ normalise_name('scope.name_given') }} <> {{ normalise_name('citizens.full_name') }}
                then 'conflicting'
            when scope.name_given is not null and scope.name_given <> citizens.full_name then 'normalised'
            else 'exact'
        end as match_quality
    from scope
    left join citizens on citizens.cccd = scope.cccd

)

select
    scored.*,
    {% if is_incremental() %}
    case
        when previous.record_key is null then null
        when previous.changed_seq <= {{ window['lo'] }} then previous.cccd
        else previous.previous_cccd
    end as previous_cccd,
    {% else %}
    null::text as previous_cccd,
    {% endif %}
    {% if is_incremental() %}{{ window['hi'] }}::bigint
    {%- else %}(select coalesce(max(discovered_seq), 0) from {{ ref('int_load_batches') }}){% endif %} as changed_seq
from scored
{% if is_incremental() %}
left join {{ this }} as previous
    on previous.registry = scored.registry
   and previous.entity = scored.entity
   and previous.record_key = scored.record_key
   and previous.role = scored.role
{% endif %}
