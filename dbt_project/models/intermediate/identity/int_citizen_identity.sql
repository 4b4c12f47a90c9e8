{#-
    Every CCCD another registry mentions, linked to the population registry's citizen, with a match quality
    (docs/datasets.md): one row per (registry, entity, record, role). A record always yields the same roles (a
    birth without a registered father keeps its father row, with a null cccd), so links never vanish.

    Incremental: the links of records loaded in this build's window, and the links pointing at citizens whose
    record changed, are recomputed (each source filtered on its own, so nothing is built in full). previous_cccd
    keeps the CCCD a link had at the last publication, so the golden record can also refresh the citizen a link
    moved away from.
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key=['registry', 'entity', 'record_key', 'role'],
    on_schema_change='fail',
    indexes=[
        {'columns': ['registry', 'entity', 'record_key', 'role'], 'unique': true},
        {'columns': ['cccd']},
        {'columns': ['changed_seq']},
    ],
) }}

-- depends_on: {{ ref('int_load_batches') }}
{%- set window = kho_batch_window() if is_incremental() else none %}
{%- set narrowed = window is not none and window['lo'] > 0 %}

with

citizens as (

    select cccd, full_name, date_of_birth, sex from {{ ref('stg_population__citizens') }}

),

{% if is_incremental() %}
changed_citizens as materialized (

    select cccd from {{ ref('stg_population__citizens') }} where batch_id in {{ kho_window_batches(window) }}

),
{% endif %}

births as (

    select * from {{ ref('stg_civil_status__births') }}

),

marriages as (

    select * from {{ ref('stg_civil_status__marriages') }}

),

scope as (

    select 'insurance'::text as registry, 'participants'::text as entity, social_insurance_code as record_key,
           'participant'::text as role, cccd, full_name as name_given, null::date as date_of_birth_given,
           null::text as sex_given
    from {{ ref('stg_insurance__participants') }} {{ kho_scope_filter(window, 'cccd') }}
    union all
    select 'civil_status', 'births', registration_id, 'child', child_cccd, child_full_name, date_of_birth, child_sex
    from births {{ kho_scope_filter(window, 'child_cccd') }}
    union all
    select 'civil_status', 'births', registration_id, 'mother', mother_cccd, null, null, null
    from births {{ kho_scope_filter(window, 'mother_cccd') }}
    union all
    select 'civil_status', 'births', registration_id, 'father', father_cccd, null, null, null
    from births {{ kho_scope_filter(window, 'father_cccd') }}
    union all
    select 'civil_status', 'deaths', registration_id, 'deceased', cccd, null, null, null
    from {{ ref('stg_civil_status__deaths') }} {{ kho_scope_filter(window, 'cccd') }}
    union all
    select 'civil_status', 'marriages', registration_id, 'husband', husband_cccd, null, husband_date_of_birth, null
    from marriages {{ kho_scope_filter(window, 'husband_cccd') }}
    union all
    select 'civil_status', 'marriages', registration_id, 'wife', wife_cccd, null, wife_date_of_birth, null
    from marriages {{ kho_scope_filter(window, 'wife_cccd') }}
    union all
    select 'business', 'enterprises', enterprise_code, 'legal_representative', legal_rep_cccd, null, null, null
    from {{ ref('stg_business__enterprises') }} {{ kho_scope_filter(window, 'legal_rep_cccd') }}

),

scored as (

    -- Names are normalised only where they differ: most are equal, and normalising costs a few regexps each.
    select
        scope.*,
        case
            when scope.cccd is null then null
            when citizen.cccd is null then 'unmatched'
            when scope.date_of_birth_given <> citizen.date_of_birth then 'conflicting'
            when scope.sex_given <> citizen.sex then 'conflicting'
            when scope.name_given is null or scope.name_given = citizen.full_name then 'exact'
            when {{ normalise_name('scope.name_given') }} = {{ normalise_name('citizen.full_name') }} then 'normalised'
            else 'conflicting'
        end as match_quality
    from scope
    {% if narrowed -%}
    -- A few thousand links a night: look each citizen up by its key rather than hash the whole registry.
    {{ kho_citizen_lookup('citizen', 'scope.cccd') }}
    {%- else -%}
    left join citizens as citizen on citizen.cccd = scope.cccd
    {%- endif %}

)

select
    scored.*,
    {% if is_incremental() %}
    case
        when previous.record_key is null then null
        when previous.changed_seq <= {{ window['lo'] }} then previous.cccd
        else previous.previous_cccd
    end as previous_cccd,
    {{ window['hi'] }}::bigint as changed_seq
    {% else %}
    null::text as previous_cccd,
    (select coalesce(max(discovered_seq), 0) from {{ ref('int_load_batches') }}) as changed_seq
    {% endif %}
from scored
{% if is_incremental() %}
left join lateral (
    select this.cccd, this.previous_cccd, this.changed_seq, this.record_key
    from {{ this }} as this
    where this.registry = scored.registry
      and this.entity = scored.entity
      and this.record_key = scored.record_key
      and this.role = scored.role
    limit 1
) as previous on true
{% endif %}
