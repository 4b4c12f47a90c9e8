with

source as (

    select * from {{ source('population', 'population__citizens') }}

),

renamed as (

    select
        cccd,
        full_name,
        date_of_birth,
        sex,
        birth_province_code,
        permanent_commune_code,
        status,
        status = 'alive' as is_alive,
        updated_at,
        _batch_id as batch_id,
        _loaded_at as loaded_at

    from source

)

select * from renamed
