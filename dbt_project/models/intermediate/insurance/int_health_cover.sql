{{ config(materialized='view') }}
-- Who holds active health cover on the as-of date: an active health coverage period of the person's participant
-- record, valid on that date (valid_to inclusive, open-ended when null).
select
    participants.cccd,
    true as has_active_health_cover
from {{ ref('stg_insurance__participants') }} as participants
where exists (
    select from {{ ref('stg_insurance__coverage_periods') }} as coverage
    where coverage.social_insurance_code = participants.social_insurance_code
      and coverage.coverage_type = 'health'
      and coverage.status = 'active'
      and coverage.valid_from <= {{ kho_as_of() }}
      and (coverage.valid_to is null or coverage.valid_to >= {{ kho_as_of() }})
)
group by participants.cccd
