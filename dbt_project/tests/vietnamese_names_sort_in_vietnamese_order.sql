{#-
    The marts' name columns sort in Vietnamese order: Đ is a letter of its own, after every D and before E
    (macros/collation.sql). Warns, on every build, when the server has neither ICU nor a vi_VN locale and
    reference.vietnamese fell back to byte order (the pgserver wheel's binaries are built without ICU).
-#}
{{ config(severity='warn') }}

-- depends_on: {{ ref('golden_citizens') }}
select
    'reference.vietnamese sorts Đặng after Zoan (byte order): this PostgreSQL has no ICU and no vi_VN.UTF-8 locale, '
    || 'so names sort in C order; create the warehouse with a PostgreSQL built with ICU (apt-get install '
    || 'postgresql: docs/datasets.md, "Vietnamese names")' as problem
where 'Đặng' collate reference.vietnamese > 'Zoan' collate reference.vietnamese
