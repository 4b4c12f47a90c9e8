-- The national KPI by commune of permanent residence: of the citizens alive on the as-of date, how many hold active
-- health cover.
select
    {{ kho_as_of() }} as as_of_date,
    permanent_commune_code,
    {{ commune_unit_column_names() | join(', ') }},
    count(*) as living_population,
    count(*) filter (where has_active_health_cover) as insured,
    round(count(*) filter (where has_active_health_cover)::numeric / count(*), 4) as coverage_rate
from {{ ref('golden_citizens') }}
where is_alive
group by permanent_commune_code, {{ commune_unit_column_names() | join(', ') }}
