{{ config(materialized='view') }}
-- Each citizen's current household membership (left_on is null); if the registry holds several, the latest
-- joined_on wins, then the largest household_id.
select distinct on (cccd)
    cccd,
    household_id,
    relation_to_head,
    joined_on
from {{ ref('stg_population__household_members') }}
where left_on is null
order by cccd, joined_on desc, household_id desc
