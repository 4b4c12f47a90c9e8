{#
    Vietnamese name normalisation for matching (docs/datasets.md): the same person's name arrives as NFC or NFD, in
    old or new tone placement ("hoà" / "hòa"), with đ/Đ/Ð, doubled spaces or in capitals.

    In NFD every Vietnamese letter but đ is an ASCII letter plus combining marks, so lower() needs no locale; the
    tone mark (grave, acute, tilde, hook above, dot below) of each word is moved to the end of the word, so its
    placement no longer matters, while the vowel marks (circumflex, breve, horn) stay where they are.
#}
{% macro normalise_name(expr) -%}
    normalize(
        regexp_replace(
            btrim(regexp_replace(
                lower(translate(normalize({{ expr }}, NFD), 'ĐđÐð', 'dddd')),
                '\s+', ' ', 'g')),
            '([\u0300\u0301\u0303\u0309\u0323])([^ \u0300\u0301\u0303\u0309\u0323]+)', '\2\1', 'g'),
        NFC)
{%- endmacro %}

{% macro completed_years(born, on) -%}
    {#- Age as law counts it: someone born on 29 February comes of age on 1 March (kho.sources.rules). -#}
    ((extract(year from {{ on }}) - extract(year from {{ born }}))::int
     - case when extract(month from {{ on }}) * 100 + extract(day from {{ on }})
                 < extract(month from {{ born }}) * 100 + extract(day from {{ born }}) then 1 else 0 end)
{%- endmacro %}
