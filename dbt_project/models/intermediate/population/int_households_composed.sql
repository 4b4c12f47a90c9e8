{{ config(materialized='view') }}
-- Household composition from the memberships: current members (left_on is null) who are alive on the as-of date,
-- and how many of them the registry calls head.
with

current_members as (

    select members.household_id, members.cccd, members.relation_to_head
    from {{ ref('stg_population__household_members') }} as members
    where members.left_on is null
      and not exists (
          select from {{ ref('int_citizen_deaths') }} as deaths
          where deaths.cccd = members.cccd and deaths.date_of_death <= {{ kho_as_of() }}
      )

)

select
    household_id,
    count(*) as current_living_members,
    count(*) filter (where relation_to_head = 'head') as current_heads
from current_members
group by household_id
