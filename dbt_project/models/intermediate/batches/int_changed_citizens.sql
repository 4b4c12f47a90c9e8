{#-
    The citizens this build must recompute (docs/datasets.md, "Incremental builds"): those whose own record, a
    record linked to them (or linked to them before: previous_cccd), a membership or a coverage period was loaded
    in the build's window, and those whose cover or death starts or ends between the last publication's as-of date
    and this build's. A small table, analysed, so the incremental models that join it are planned for its real size.
-#}
-- depends_on: {{ ref('int_load_batches') }}
-- depends_on: {{ ref('stg_population__citizens') }}
-- depends_on: {{ ref('int_citizen_identity') }}
-- depends_on: {{ ref('stg_population__household_members') }}
-- depends_on: {{ ref('stg_insurance__coverage_periods') }}
-- depends_on: {{ ref('stg_insurance__participants') }}
-- depends_on: {{ ref('int_citizen_deaths') }}
{{ config(materialized='table', post_hook='analyze {{ this }}') }}

{%- set window = kho_batch_window() %}

{% if kho_window_is_everything() %}
-- A full refresh, or a first build: the incremental models recompute everything. '*' says so to the data tests
-- that read this table (kho_changed_rows).
select '*'::text as cccd
{% else %}
with

changed as (

    select cccd from {{ ref('stg_population__citizens') }} where batch_id in {{ kho_window_batches(window) }}
    union
    select cccd from {{ ref('int_citizen_identity') }} where changed_seq > {{ window['lo'] }} and cccd is not null
    union
    select previous_cccd from {{ ref('int_citizen_identity') }}
    where changed_seq > {{ window['lo'] }} and previous_cccd is not null
    union
    select cccd from {{ ref('stg_population__household_members') }}
    where batch_id in {{ kho_window_batches(window) }}
    union
    select participants.cccd
    from {{ ref('stg_insurance__coverage_periods') }} as coverage
    join {{ ref('stg_insurance__participants') }} as participants
        on participants.social_insurance_code = coverage.social_insurance_code
    where coverage.batch_id in {{ kho_window_batches(window) }}
       or {{ kho_as_of_moved(window, 'coverage.valid_from') }}
       or {{ kho_as_of_moved(window, 'coverage.valid_to + 1') }}
    union
    select cccd from {{ ref('int_citizen_deaths') }} where {{ kho_as_of_moved(window, 'date_of_death') }}

)

select cccd from changed
{% endif %}
