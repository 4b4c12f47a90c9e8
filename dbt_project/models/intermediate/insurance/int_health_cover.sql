{{ config(materialized='view') }}
-- Who holds active health cover on the as-of date: an active health coverage period of the person's participant
-- record, valid on that date (valid_to inclusive, open-ended when null). macros/lookups.sql holds the query.
{{ kho_health_cover() }}
