{#-
    Each citizen's residence history from the snapshot: one row per period, with the 2025 province of the period's
    permanent commune (its code read in the era of valid_from, as the golden record reads the current one by
    updated_at). Incremental (merge by cccd and valid_from): the periods of the citizens whose record was loaded in
    this build's window.
-#}
-- depends_on: {{ ref('int_citizen_residence_changes') }}
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key=['cccd', 'valid_from'],
    on_schema_change='fail',
) }}

with

versions as (

    select * from {{ ref('citizen_residence_snapshot') }}
    {% if is_incremental() %}
    where cccd in (select cccd from {{ ref('int_citizen_residence_changes') }})
    {% endif %}

)

select
    versions.cccd,
    versions.permanent_commune_code,
    {{ commune_unit('province_code_2025', kho_local_date('versions.dbt_valid_from')) }} as province_code_2025,
    versions.temporary_commune_code,
    versions.household_id,
    versions.dbt_valid_from as valid_from,
    versions.dbt_valid_to as valid_to,
    (versions.dbt_valid_to is null) as is_current
from versions
{{ commune_units_join('versions.permanent_commune_code') }}
