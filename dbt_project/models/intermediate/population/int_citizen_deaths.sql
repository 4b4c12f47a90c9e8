{{ config(materialized='view') }}
-- Who is dead, and since when: the civil status registry's death registration decides (the earliest of a CCCD's
-- registrations: smallest date_of_death, then registration_id); a death only the population registry records
-- still counts, with its date.
with

registered as (

    select distinct on (cccd)
        cccd,
        date_of_death,
        registration_id as death_registration_id
    from {{ ref('stg_civil_status__deaths') }}
    order by cccd, date_of_death, registration_id

),

population_only as (

    select
        citizens.cccd,
        citizens.date_of_death,
        null::text as death_registration_id
    from {{ ref('stg_population__citizens') }} as citizens
    where citizens.status = 'deceased'
      and citizens.date_of_death is not null
      and not exists (select from registered where registered.cccd = citizens.cccd)

)

select *, 'civil_status'::text as death_source from registered
union all
select *, 'population'::text as death_source from population_only
