-- Active enterprises by 2025 province and VSIC industry, and per 1,000 residents alive on the as-of date.
with

active as (

    select province_code_2025, industry_code, count(*) as active_enterprises
    from {{ ref('enterprises') }}
    where status = 'active' and province_code_2025 is not null
    group by province_code_2025, industry_code

),

residents as (

    select province_code_2025, count(*) as residents
    from {{ ref('golden_citizens') }}
    where is_alive and province_code_2025 is not null
    group by province_code_2025

)

select
    active.province_code_2025,
    provinces.province_name as province_name_2025,
    active.industry_code,
    active.active_enterprises,
    coalesce(residents.residents, 0) as residents,
    round(active.active_enterprises * 1000.0 / nullif(residents.residents, 0), 2) as enterprises_per_1000_residents
from active
left join residents on residents.province_code_2025 = active.province_code_2025
left join {{ ref('ref_provinces_2025') }} as provinces on provinces.province_code = active.province_code_2025
