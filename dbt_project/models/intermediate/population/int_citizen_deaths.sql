{{ config(materialized='view') }}
-- Who is dead, and since when: the civil status registry's death registration decides (the earliest of a CCCD's
-- registrations: smallest date_of_death, then registration_id); a death only the population registry records
-- still counts, with its date. One sort over both sources, no anti-join (the planner cannot estimate how many
-- citizens are deceased, and an anti-join it thinks is tiny turns quadratic).
with

recorded as (

    select cccd, date_of_death, registration_id as death_registration_id, 0 as source_rank
    from {{ ref('stg_civil_status__deaths') }}
    union all
    select cccd, date_of_death, null::text, 1
    from {{ ref('stg_population__citizens') }}
    where status = 'deceased' and date_of_death is not null

)

select distinct on (cccd)
    cccd,
    date_of_death,
    death_registration_id,
    case source_rank when 0 then 'civil_status' else 'population' end as death_source
from recorded
order by cccd, source_rank, date_of_death, death_registration_id
