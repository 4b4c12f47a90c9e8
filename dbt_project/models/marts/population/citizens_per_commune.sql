with

citizens as (

    select * from {{ ref('golden_citizens') }}

),

communes as (

    select * from {{ ref('ref_communes') }}

),

counted as (

    select
        permanent_commune_code,
        count(*) as citizens_total,
        count(*) filter (where is_alive) as citizens_alive,
        count(*) filter (where sex = 'M') as citizens_male,
        count(*) filter (where sex = 'F') as citizens_female

    from citizens
    group by permanent_commune_code

),

final as (

    -- A left join: a commune code missing from the reference keeps its citizens (with null names) and fails the
    -- relationships test loudly, instead of silently dropping people from the counts.
    select
        counted.permanent_commune_code,
        communes.commune_name,
        communes.district_name,
        communes.province_code,
        counted.citizens_total,
        counted.citizens_alive,
        counted.citizens_male,
        counted.citizens_female

    from counted
    left join communes
        on counted.permanent_commune_code = communes.commune_code

)

select * from final
