-- What no single registry can see: one row per contradiction between registries (docs/datasets.md, the seven
-- kinds). Every registry's record passed its own contract; the contradiction appears only when they are joined.
with

citizens as (

    select cccd, date_of_birth, sex from {{ ref('stg_population__citizens') }}

),

deaths as (

    select * from {{ ref('int_citizen_deaths') }}

),

members as (

    select * from {{ ref('stg_population__household_members') }}

),

births as (

    select * from {{ ref('stg_civil_status__births') }}

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
               deaths.date_of_death) as detail
    from {{ ref('stg_insurance__coverage_periods') }} as coverage
    join {{ ref('stg_insurance__participants') }} as participants
        on participants.social_insurance_code = coverage.social_insurance_code
    join deaths on deaths.cccd = participants.cccd
    where coverage.status = 'active'
      and (coverage.valid_to is null or coverage.valid_to > deaths.date_of_death)

),

legal_rep_unknown as (

    select
        'legal_rep_unknown', array['business', 'population']::text[],
        enterprises.legal_rep_cccd, null, null, null, null, null, null, enterprises.enterprise_code,
        enterprises.established_on,
        format('enterprise %s names legal representative %s, whom the population registry does not know',
               enterprises.enterprise_code, enterprises.legal_rep_cccd)
    from {{ ref('stg_business__enterprises') }} as enterprises
    where not exists (select from citizens where citizens.cccd = enterprises.legal_rep_cccd)

),

birth_without_citizen as (

    select
        'birth_without_citizen', array['civil_status', 'population']::text[],
        births.child_cccd, null, null, null, births.registration_id, null, null, null, births.date_of_birth,
        format('birth %s registers CCCD %s, which the population registry does not know',
               births.registration_id, births.child_cccd)
    from births
    where not exists (select from citizens where citizens.cccd = births.child_cccd)

),

cccd_contradicts_birth_record as (

    select
        'cccd_contradicts_birth_record', array['civil_status', 'population']::text[],
        births.child_cccd, null, null, null, births.registration_id, null, null, null, births.date_of_birth,
        format('birth %s records %s born %s; the population registry holds CCCD %s as %s born %s',
               births.registration_id, births.child_sex, births.date_of_birth, births.child_cccd, citizens.sex,
               citizens.date_of_birth)
    from births
    join citizens on citizens.cccd = births.child_cccd
    where births.date_of_birth <> citizens.date_of_birth or births.child_sex <> citizens.sex

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
    from {{ ref('stg_civil_status__marriages') }} as marriages
    left join citizens as husband on husband.cccd = marriages.husband_cccd
    left join citizens as wife on wife.cccd = marriages.wife_cccd

),

marriage_under_legal_age as (

    select
        'marriage_under_legal_age', array['civil_status', 'population']::text[],
        case when wife_under_age then wife_cccd else husband_cccd end, null, null, null, null, null,
        registration_id, null, registered_on,
        format('marriage %s registered on %s; by the population registry the %s was born on %s, under %s',
               registration_id, registered_on, case when wife_under_age then 'wife' else 'husband' end,
               case when wife_under_age then wife_born else husband_born end,
               case when wife_under_age then 18 else 20 end)
    from marriages_judged
    where husband_under_age or wife_under_age

),

living_current_members as (

    select members.household_id, members.relation_to_head
    from members
    where members.left_on is null
      and not exists (select from deaths where deaths.cccd = members.cccd)

),

household_heads as (

    select
        households.household_id,
        count(*) filter (where living.relation_to_head = 'head') as heads
    from {{ ref('stg_population__households') }} as households
    join living_current_members as living on living.household_id = households.household_id
    group by households.household_id

),

household_without_one_head as (

    select
        'household_without_one_head', array['population']::text[],
        null, household_id, null, null, null, null, null, null, null::date,
        format('household %s has %s heads among its current living members', household_id, heads)
    from household_heads
    where heads <> 1

),

member_after_death as (

    select
        'member_after_death', array['population', 'civil_status']::text[],
        members.cccd, members.household_id, null, null, null, deaths.death_registration_id, null, null,
        deaths.date_of_death,
        format('%s died on %s but is a member of household %s %s', members.cccd, deaths.date_of_death,
               members.household_id, coalesce('until ' || members.left_on, 'with no end'))
    from members
    join deaths on deaths.cccd = members.cccd
    where members.left_on is null or members.left_on > deaths.date_of_death

),

findings as (

    select * from deceased_with_active_coverage
    union all select * from legal_rep_unknown
    union all select * from birth_without_citizen
    union all select * from cccd_contradicts_birth_record
    union all select * from marriage_under_legal_age
    union all select * from household_without_one_head
    union all select * from member_after_death

)

select
    md5(concat_ws('|', kind, coalesce(cccd, ''), coalesce(household_id, ''), coalesce(social_insurance_code, ''),
                  coalesce(coverage_id, ''), coalesce(birth_registration_id, ''), coalesce(death_registration_id, ''),
                  coalesce(marriage_registration_id, ''), coalesce(enterprise_code, ''))) as finding_id,
    *
from findings
