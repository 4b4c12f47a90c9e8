-- Every known commune code with its units in each era it exists in (docs/datasets.md): old codes from
-- ref_communes, new codes from the 2025 mapping. A code reused by the reform has one row per era.
with

communes as (

    select * from {{ ref('ref_communes') }}

),

mapping as (

    select * from {{ ref('ref_commune_mapping_2025') }}

),

province_mapping as (

    select * from {{ ref('ref_province_mapping_2025') }}

),

successors as (

    select
        old_commune_code,
        count(distinct new_commune_code) as successor_count,
        min(new_commune_code) as first_code,
        min(new_commune_name) as first_name
    from mapping
    group by old_commune_code

),

as_pre_2025 as (

    select
        communes.commune_code,
        'pre_2025'::text as commune_era,
        communes.commune_code as commune_code_pre_2025,
        communes.commune_name as commune_name_pre_2025,
        communes.district_name as district_name_pre_2025,
        communes.province_code as province_code_pre_2025,
        case when successors.successor_count = 1 then successors.first_code end as commune_code_2025,
        case when successors.successor_count = 1 then successors.first_name end as commune_name_2025,
        province_mapping.new_province_code as province_code_2025,
        coalesce(successors.successor_count > 1, false) as commune_is_split
    from communes
    left join successors on successors.old_commune_code = communes.commune_code
    left join province_mapping on province_mapping.old_province_code = communes.province_code

),

predecessors as (

    select
        mapping.new_commune_code,
        min(mapping.new_commune_name) as new_commune_name,
        min(mapping.new_province_code) as new_province_code,
        count(distinct mapping.old_commune_code) as predecessor_count,
        min(mapping.old_commune_code) as first_predecessor,
        count(distinct communes.province_code) as old_province_count,
        min(communes.province_code) as first_old_province
    from mapping
    left join communes on communes.commune_code = mapping.old_commune_code
    group by mapping.new_commune_code

),

as_2025 as (

    select
        predecessors.new_commune_code as commune_code,
        '2025'::text as commune_era,
        case when predecessors.predecessor_count = 1 then predecessors.first_predecessor end
            as commune_code_pre_2025,
        only_one.commune_name as commune_name_pre_2025,
        only_one.district_name as district_name_pre_2025,
        case when predecessors.old_province_count = 1 then predecessors.first_old_province end
            as province_code_pre_2025,
        predecessors.new_commune_code as commune_code_2025,
        predecessors.new_commune_name as commune_name_2025,
        predecessors.new_province_code as province_code_2025,
        false as commune_is_split
    from predecessors
    left join communes as only_one
        on only_one.commune_code = predecessors.first_predecessor and predecessors.predecessor_count = 1

)

select * from as_pre_2025
union all
select * from as_2025
