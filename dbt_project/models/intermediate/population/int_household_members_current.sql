{{ config(materialized='view') }}
-- Each citizen's current household membership (left_on is null); if the registry holds several, the latest
-- joined_on wins, then the largest household_id. macros/lookups.sql holds the query.
{{ kho_current_membership() }}
