-- Births, deaths and marriages by month and commune of registration, with the commune's units in both eras (the
-- era of each registration by its registered_on).
with

events as (

    select 'birth'::text as event_type, date_of_birth as event_date, place_commune_code, registered_on
    from {{ ref('stg_civil_status__births') }}
    union all
    select 'death', date_of_death, place_commune_code, registered_on
    from {{ ref('stg_civil_status__deaths') }}
    union all
    select 'marriage', registered_on, place_commune_code, registered_on
    from {{ ref('stg_civil_status__marriages') }}

),

placed as (

    select
        date_trunc('month', events.event_date)::date as event_month,
        events.event_type,
        events.place_commune_code,
        {{ commune_units('events.registered_on') }}
    from events
    {{ commune_units_join('events.place_commune_code') }}

)

select
    event_month,
    event_type,
    place_commune_code,
    {{ commune_unit_column_names() | join(', ') }},
    count(*) as events
from placed
group by event_month, event_type, place_commune_code, {{ commune_unit_column_names() | join(', ') }}
