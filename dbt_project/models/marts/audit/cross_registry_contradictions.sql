{#-
    What no single registry can see: one row per contradiction between registries (docs/datasets.md, the seven
    kinds). Every registry's record passed its own contract; the contradiction appears only when they are joined.

    Incremental: every rule judges one record (subject_record) by that record and the citizens it names, so a build
    deletes the findings of the subjects int_audit_subjects lists (loaded in the window, or naming a changed
    citizen) and inserts what the rules find for them now, in the same transaction.

    Each finding belongs to a 2025 province (province_code_2025, what agencies' row-level security reads), placed by
    that same record or citizen, so the incremental build recomputes it whenever it can change: findings about a
    deceased citizen (their coverage, their membership) by the citizen's permanent residence, else by the place of
    their death registration; the others by the place of the record judged (the enterprise's commune, the birth's
    or marriage's commune of registration, the household's commune). Each rule gives `resident_cccd` (the citizen
    whose residence places it) and `place_commune_code`, `place_on` (the fallback or only place, and the date its
    code is read by).
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{% if is_incremental() %}delete from {{ this }}{% if not kho_window_is_everything() %} where "
             "subject_record in (select entity || '/' || record_key from {{ ref('int_audit_subjects') }})"
             "{% endif %}{% endif %}",
) }}

-- depends_on: {{ ref('int_load_batches') }}
-- depends_on: {{ ref('int_audit_subjects') }}
{%- set subjects = ref('int_audit_subjects') %}
{%- set narrowed = is_incremental() and not kho_window_is_everything() %}

-- The citizens a subject names are looked up one by one through the raw table's key (kho_citizen_lookup).
with

deaths as (

    select * from {{ ref('int_citizen_deaths') }}

),

death_registrations as (

    select registration_id, place_commune_code, registered_on from {{ ref('stg_civil_status__deaths') }}

),

coverage as (

    select *, 'insurance.coverage_periods/' || coverage_id as subject_record
    from {{ ref('stg_insurance__coverage_periods') }}
    {% if narrowed %}
    where coverage_id in (select record_key from {{ subjects }} where entity = 'insurance.coverage_periods')
    {% endif %}

),

enterprises as (

    select *, 'business.enterprises/' || enterprise_code as subject_record
    from {{ ref('stg_business__enterprises') }}
    {% if narrowed %}
    where enterprise_code in (select record_key from {{ subjects }} where entity = 'business.enterprises')
    {% endif %}

),

births as (

    select *, 'civil_status.births/' || registration_id as subject_record
    from {{ ref('stg_civil_status__births') }}
    {% if narrowed %}
    where registration_id in (select record_key from {{ subjects }} where entity = 'civil_status.births')
    {% endif %}

),

marriages as (

    select *, 'civil_status.marriages/' || registration_id as subject_record
    from {{ ref('stg_civil_status__marriages') }}
    {% if narrowed %}
    where registration_id in (select record_key from {{ subjects }} where entity = 'civil_status.marriages')
    {% endif %}

),

households as (

    select household_id, commune_code, updated_at, 'population.households/' || household_id as subject_record
    from {{ ref('stg_population__households') }}
    {% if narrowed %}
    where household_id in (select record_key from {{ subjects }} where entity = 'population.households')
    {% endif %}

),

memberships as (

    select *, 'population.household_members/' || household_id || '|' || cccd as subject_record
    from {{ ref('stg_population__household_members') }}
    {% if narrowed %}where (household_id, cccd) in (
        select split_part(record_key, '|', 1), split_part(record_key, '|', 2)
        from {{ subjects }} where entity = 'population.household_members'
    ){% endif %}

),

deceased_with_active_coverage as (

    select
        'deceased_with_active_coverage'::text as kind,
        array['insurance', 'civil_status']::text[] as registries,
        participants.cccd,
        null::text as household_id,
        participants.social_insurance_code,
        coverage.coverage_id,
        null::text as birth_registration_id,
        deaths.death_registration_id,
        null::text as marriage_registration_id,
        null::text as enterprise_code,
        deaths.date_of_death as event_date,
        format('%s cover %s is %s%s, but its holder died on %s', coverage.coverage_type, coverage.coverage_id,
               coverage.status, coalesce(' until ' || coverage.valid_to, ' with no end'),
               deaths.date_of_death) as detail,
        coverage.subject_record,
        participants.cccd as resident_cccd,
        death_registrations.place_commune_code,
        death_registrations.registered_on as place_on
    from coverage
    join {{ ref('stg_insurance__participants') }} as participants
        on participants.social_insurance_code = coverage.social_insurance_code
    join deaths on deaths.cccd = participants.cccd
    left join death_registrations on death_registrations.registration_id = deaths.death_registration_id
    where coverage.status = 'active'
      and (coverage.valid_to is null or coverage.valid_to > deaths.date_of_death)

),

legal_rep_unknown as (

    select
        'legal_rep_unknown', array['business', 'population']::text[],
        enterprises.legal_rep_cccd, null, null, null, null, null, null, enterprises.enterprise_code,
        enterprises.established_on,
        format('enterprise %s names legal representative %s, whom the population registry does not know',
               enterprises.enterprise_code, enterprises.legal_rep_cccd),
        enterprises.subject_record,
        null, enterprises.commune_code, {{ kho_local_date('enterprises.updated_at') }}
    from enterprises
    {{ kho_citizen_lookup('representative', 'enterprises.legal_rep_cccd') }}
    where representative.cccd is null

),

births_judged as (

    -- One pass over the births for both rules about them.
    select births.*, citizens.cccd as citizen_cccd, citizens.date_of_birth as citizen_born, citizens.sex as citizen_sex
    from births
    {{ kho_citizen_lookup('citizens', 'births.child_cccd') }}

),

birth_without_citizen as (

    select
        'birth_without_citizen', array['civil_status', 'population']::text[],
        child_cccd, null, null, null, registration_id, null, null, null, date_of_birth,
        format('birth %s registers CCCD %s, which the population registry does not know',
               registration_id, child_cccd),
        subject_record,
        null, place_commune_code, registered_on
    from births_judged
    where citizen_cccd is null

),

cccd_contradicts_birth_record as (

    select
        'cccd_contradicts_birth_record', array['civil_status', 'population']::text[],
        child_cccd, null, null, null, registration_id, null, null, null, date_of_birth,
        format('birth %s records %s born %s; the population registry holds CCCD %s as %s born %s',
               registration_id, child_sex, date_of_birth, child_cccd, citizen_sex, citizen_born),
        subject_record,
        null, place_commune_code, registered_on
    from births_judged
    where citizen_cccd is not null and (date_of_birth <> citizen_born or child_sex <> citizen_sex)

),

marriages_judged as (

    select
        marriages.*,
        husband.date_of_birth as husband_born,
        wife.date_of_birth as wife_born,
        husband.cccd is not null
            and {{ completed_years('husband.date_of_birth', 'marriages.registered_on') }} < 20 as husband_under_age,
        wife.cccd is not null
            and {{ completed_years('wife.date_of_birth', 'marriages.registered_on') }} < 18 as wife_under_age
    from marriages
    {{ kho_citizen_lookup('husband', 'marriages.husband_cccd') }}
    {{ kho_citizen_lookup('wife', 'marriages.wife_cccd') }}

),

marriage_under_legal_age as (

    select
        'marriage_under_legal_age', array['civil_status', 'population']::text[],
        case when wife_under_age then wife_cccd else husband_cccd end, null, null, null, null, null,
        registration_id, null, registered_on,
        format('marriage %s registered on %s; by the population registry the %s was born on %s, under %s',
               registration_id, registered_on, case when wife_under_age then 'wife' else 'husband' end,
               case when wife_under_age then wife_born else husband_born end,
               case when wife_under_age then 18 else 20 end),
        subject_record,
        null, place_commune_code, registered_on
    from marriages_judged
    where husband_under_age or wife_under_age

),

household_heads as (

    -- The current living members of the households in scope, and how many of them the registry calls head.
    select
        households.household_id,
        households.commune_code,
        households.updated_at,
        households.subject_record,
        count(*) filter (where members.relation_to_head = 'head') as heads
    from households
    join {{ ref('stg_population__household_members') }} as members
        on members.household_id = households.household_id
    where members.left_on is null
      and not exists (select from deaths where deaths.cccd = members.cccd)
    group by households.household_id, households.commune_code, households.updated_at, households.subject_record

),

household_without_one_head as (

    select
        'household_without_one_head', array['population']::text[],
        null, household_id, null, null, null, null, null, null, null::date,
        format('household %s has %s heads among its current living members', household_id, heads),
        subject_record,
        null, commune_code, {{ kho_local_date('updated_at') }}
    from household_heads
    where heads <> 1

),

member_after_death as (

    select
        'member_after_death', array['population', 'civil_status']::text[],
        memberships.cccd, memberships.household_id, null, null, null, deaths.death_registration_id, null, null,
        deaths.date_of_death,
        format('%s died on %s but is a member of household %s %s', memberships.cccd, deaths.date_of_death,
               memberships.household_id, coalesce('until ' || memberships.left_on, 'with no end')),
        memberships.subject_record,
        memberships.cccd, death_registrations.place_commune_code, death_registrations.registered_on
    from memberships
    join deaths on deaths.cccd = memberships.cccd
    left join death_registrations on death_registrations.registration_id = deaths.death_registration_id
    where memberships.left_on is null or memberships.left_on > deaths.date_of_death

),

findings as (

    select * from deceased_with_active_coverage
    union all select * from legal_rep_unknown
    union all select * from birth_without_citizen
    union all select * from cccd_contradicts_birth_record
    union all select * from marriage_under_legal_age
    union all select * from household_without_one_head
    union all select * from member_after_death

),

placed as (

    -- The resident's permanent residence as the population registry holds it (era by its updated_at), else the
    -- rule's own place (era by place_on).
    select
        findings.*,
        coalesce(resident.permanent_commune_code, findings.place_commune_code) as placed_code,
        case when resident.cccd is not null then {{ kho_local_date('resident.updated_at') }} else findings.place_on end
            as placed_on
    from findings
    {{ kho_citizen_lookup('resident', 'findings.resident_cccd') }}

)

select
    md5(concat_ws('|', kind, coalesce(cccd, ''), coalesce(household_id, ''), coalesce(social_insurance_code, ''),
                  coalesce(coverage_id, ''), coalesce(birth_registration_id, ''), coalesce(death_registration_id, ''),
                  coalesce(marriage_registration_id, ''), coalesce(enterprise_code, ''))) as finding_id,
    placed.kind,
    placed.registries,
    placed.cccd,
    placed.household_id,
    placed.social_insurance_code,
    placed.coverage_id,
    placed.birth_registration_id,
    placed.death_registration_id,
    placed.marriage_registration_id,
    placed.enterprise_code,
    placed.event_date,
    placed.detail,
    placed.subject_record,
    {{ commune_unit('province_code_2025', 'placed.placed_on') }} as province_code_2025
from placed
{{ commune_units_join('placed.placed_code') }}
