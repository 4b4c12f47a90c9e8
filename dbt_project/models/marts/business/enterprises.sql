-- Registered enterprises with their commune in both eras and their legal representative linked to the golden
-- citizen record.
with

enterprises as (

    select * from {{ ref('stg_business__enterprises') }}

),

branches as (

    select enterprise_code, count(*) filter (where status = 'active') as active_branches
    from {{ ref('stg_business__branches') }}
    group by enterprise_code

)

select
    enterprises.enterprise_code,
    enterprises.name,
    enterprises.legal_form,
    enterprises.industry_code,
    enterprises.commune_code,
    {{ commune_units(kho_local_date('enterprises.updated_at')) }},
    enterprises.registered_capital::numeric(20, 2) as registered_capital,
    enterprises.status,
    enterprises.established_on,
    enterprises.legal_rep_cccd,
    (rep.cccd is not null) as legal_rep_known,
    rep.full_name as legal_rep_full_name,
    rep.is_alive as legal_rep_is_alive,
    coalesce(branches.active_branches, 0) as active_branches,
    enterprises.updated_at

from enterprises
{{ commune_units_join('enterprises.commune_code') }}
left join {{ ref('golden_citizens') }} as rep on rep.cccd = enterprises.legal_rep_cccd
left join branches on branches.enterprise_code = enterprises.enterprise_code
