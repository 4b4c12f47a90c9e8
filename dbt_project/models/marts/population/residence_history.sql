{#-
    Each citizen's residence history from the snapshot: one row per period. Incremental (merge by cccd and
    valid_from): the periods of the citizens whose record was loaded in this build's window.
-#}
-- depends_on: {{ ref('int_citizen_residence_changes') }}
{{ config(
    materialized='incremental',
    incremental_strategy='merge',
    unique_key=['cccd', 'valid_from'],
    on_schema_change='fail',
) }}

select
    cccd,
    permanent_commune_code,
    temporary_commune_code,
    household_id,
    dbt_valid_from as valid_from,
    dbt_valid_to as valid_to,
    (dbt_valid_to is null) as is_current
from {{ ref('citizen_residence_snapshot') }}
{% if is_incremental() %}
where cccd in (select cccd from {{ ref('int_citizen_residence_changes') }})
{% endif %}
