{#-
    The records whose findings the audit mart recomputes in an incremental build: those loaded in the window, and
    those that point at a changed citizen (int_changed_citizens: a citizen loaded, a death, a link that moved).
    Every audit rule judges one record (its subject) by that record and the citizens it names, so these are all
    the subjects whose findings can have changed: (entity, record_key), the audit mart's subject_record being
    `<entity>/<record_key>` (a membership's key is `<household_id>|<cccd>`).
-#}
-- depends_on: {{ ref('int_load_batches') }}
-- depends_on: {{ ref('int_changed_citizens') }}
-- depends_on: {{ ref('stg_insurance__coverage_periods') }}
-- depends_on: {{ ref('stg_insurance__participants') }}
-- depends_on: {{ ref('stg_business__enterprises') }}
-- depends_on: {{ ref('stg_civil_status__births') }}
-- depends_on: {{ ref('stg_civil_status__marriages') }}
-- depends_on: {{ ref('stg_population__households') }}
-- depends_on: {{ ref('stg_population__household_members') }}
{{ config(materialized='table', post_hook='analyze {{ this }}') }}

{%- set window = kho_batch_window() %}
{%- set changed = 'select cccd from ' ~ ref('int_changed_citizens') %}

{% if kho_window_is_everything() %}
-- A full refresh, or a first build: the audit mart judges every record, nothing reads this.
select null::text as entity, null::text as record_key where false
{% else %}
select 'insurance.coverage_periods'::text as entity, coverage.coverage_id as record_key
from {{ ref('stg_insurance__coverage_periods') }} as coverage
where coverage.batch_id in {{ kho_window_batches(window) }}
   or coverage.social_insurance_code in (
       select social_insurance_code from {{ ref('stg_insurance__participants') }} where cccd in ({{ changed }})
   )
union
select 'business.enterprises', enterprise_code
from {{ ref('stg_business__enterprises') }}
where batch_id in {{ kho_window_batches(window) }} or legal_rep_cccd in ({{ changed }})
union
select 'civil_status.births', registration_id
from {{ ref('stg_civil_status__births') }}
where batch_id in {{ kho_window_batches(window) }} or child_cccd in ({{ changed }})
union
select 'civil_status.marriages', registration_id
from {{ ref('stg_civil_status__marriages') }}
where batch_id in {{ kho_window_batches(window) }} or husband_cccd in ({{ changed }}) or wife_cccd in ({{ changed }})
union
select 'population.households', household_id
from {{ ref('stg_population__households') }}
where batch_id in {{ kho_window_batches(window) }}
union
select 'population.households', household_id
from {{ ref('stg_population__household_members') }}
where batch_id in {{ kho_window_batches(window) }} or cccd in ({{ changed }})
union
select 'population.household_members', household_id || '|' || cccd
from {{ ref('stg_population__household_members') }}
where batch_id in {{ kho_window_batches(window) }} or cccd in ({{ changed }})
{% endif %}
