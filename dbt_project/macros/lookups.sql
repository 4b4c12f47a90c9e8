{#
    Per-citizen lookups shared by the intermediate views and the golden record. A view over all citizens cannot be
    narrowed to a night's few thousand citizens by the planner (the narrowing is a semi-join, which PostgreSQL does
    not push below an aggregate or DISTINCT ON), so the golden record expands these with its scope inside.
    `scope`: a query returning the cccds to compute, or none for everyone.
#}

{% macro kho_health_cover(scope=none) -%}
    select
        participants.cccd,
        true as has_active_health_cover
    from {{ ref('stg_insurance__participants') }} as participants
    where exists (
        select from {{ ref('stg_insurance__coverage_periods') }} as coverage
        where coverage.social_insurance_code = participants.social_insurance_code
          and coverage.coverage_type = 'health'
          and coverage.status = 'active'
          and coverage.valid_from <= {{ kho_as_of() }}
          and (coverage.valid_to is null or coverage.valid_to >= {{ kho_as_of() }})
    )
    {% if scope is not none %}and participants.cccd in ({{ scope }}){% endif %}
    group by participants.cccd
{%- endmacro %}

{% macro kho_current_membership(scope=none) -%}
    select distinct on (cccd)
        cccd,
        household_id,
        relation_to_head,
        joined_on
    from {{ ref('stg_population__household_members') }}
    where left_on is null
    {% if scope is not none %}and cccd in ({{ scope }}){% endif %}
    order by cccd, joined_on desc, household_id desc
{%- endmacro %}

{% macro kho_citizen_lookup(alias, cccd_expr) -%}
    {#- The population registry's record of one CCCD, looked up through the raw table's key (`limit 1` keeps the
        planner from turning the lookup into a hash join over every citizen: a night judges a few records). -#}
    left join lateral (
        select citizens.cccd, citizens.full_name, citizens.date_of_birth, citizens.sex,
               citizens.permanent_commune_code, citizens.updated_at
        from {{ ref('stg_population__citizens') }} as citizens
        where citizens.cccd = {{ cccd_expr }}
        limit 1
    ) as {{ alias }} on true
{%- endmacro %}
