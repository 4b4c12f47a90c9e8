{#
    Use a custom schema verbatim (mart_population, reference), not dbt's default <target>_<custom>:
    the schema names are part of the published interface that agency roles are granted on.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
