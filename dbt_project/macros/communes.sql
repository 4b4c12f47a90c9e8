{#
    A commune code's units in both eras (docs/datasets.md, "Dates, eras and administrative units"). A code is read
    in the era of its record's date, or in the other era when it is not a code of that one.

    Use: `{{ commune_units_join('c.permanent_commune_code') }}` in the FROM clause, then
    `{{ commune_units(kho_local_date('c.updated_at')) }}` in the select list (nine columns), or
    `{{ commune_unit('province_code_2025', kho_local_date('c.updated_at')) }}` for one of them.
#}

{% macro commune_unit_column_names() -%}
    {{ return(['commune_era', 'commune_code_pre_2025', 'commune_name_pre_2025', 'district_name_pre_2025',
               'province_code_pre_2025', 'commune_code_2025', 'commune_name_2025', 'province_code_2025',
               'commune_is_split']) }}
{%- endmacro %}

{% macro commune_units_join(code, alias='cu') -%}
    left join {{ ref('int_commune_units') }} as {{ alias }}_pre
        on {{ alias }}_pre.commune_code = {{ code }} and {{ alias }}_pre.commune_era = 'pre_2025'
    left join {{ ref('int_commune_units') }} as {{ alias }}_new
        on {{ alias }}_new.commune_code = {{ code }} and {{ alias }}_new.commune_era = '2025'
{%- endmacro %}

{% macro commune_units(on_date, alias='cu') -%}
    {#- The nine unit columns; a code of neither era gets the era 'unknown' and null units. -#}
    {%- for column in commune_unit_column_names() %}
        {{ commune_unit(column, on_date, alias) }} as {{ column }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}

{% macro commune_unit(column, on_date, alias='cu') -%}
    {#- One unit column of the code joined by commune_units_join, read in the era of `on_date`. -#}
    {%- set use_pre -%}
        ({{ alias }}_pre.commune_code is not null
         and ({{ on_date }} < {{ kho_reform_date() }} or {{ alias }}_new.commune_code is null))
    {%- endset -%}
    {%- set picked -%}
        case when {{ use_pre }} then {{ alias }}_pre.{{ column }} else {{ alias }}_new.{{ column }} end
    {%- endset -%}
    {%- if column == 'commune_era' %}coalesce({{ picked }}, 'unknown'){% else %}{{ picked }}{% endif -%}
{%- endmacro %}
