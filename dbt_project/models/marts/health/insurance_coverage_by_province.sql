-- The national KPI by provincial unit after the 2025 reorganisation (34 units).
with

by_province as (

    select
        province_code_2025,
        sum(living_population) as living_population,
        sum(insured) as insured
    from {{ ref('insurance_coverage_by_commune') }}
    where province_code_2025 is not null
    group by province_code_2025

)

select
    {{ kho_as_of() }} as as_of_date,
    by_province.province_code_2025,
    provinces.province_name as province_name_2025,
    by_province.living_population::bigint as living_population,
    by_province.insured::bigint as insured,
    round(by_province.insured / nullif(by_province.living_population, 0), 4) as coverage_rate
from by_province
left join {{ ref('ref_provinces_2025') }} as provinces on provinces.province_code = by_province.province_code_2025
