{#
    Vietnamese sort order for the marts' name columns (docs/datasets.md, "Vietnamese names").

    The warehouse is created with --no-locale, so text compares byte by byte: "Đặng" (Đ is U+0110) sorts after
    "Zoan". Name columns therefore declare `collate reference.vietnamese` in their contract (a custom column
    constraint, so the contract's data_type stays `text`), and this on-run-start hook makes sure that collation
    exists before any model is built: ICU's `vi` where the server has ICU (Debian's PostgreSQL); else the
    operating system's vi_VN.UTF-8 locale; else, documented fallback, a copy of "C" (byte order, as before) and the
    data test `vietnamese_names_sort_in_vietnamese_order` warns on every build. One name in the contracts whatever
    the server, so the yml does not depend on how the cluster was built; a collation needs no privilege to be
    used, so agencies read the columns without any grant on `reference`.
#}

{% macro kho_vietnamese_collation() -%}
    {#- Idempotent; two builds starting together may both try to create it, the loser finds it made. `commit`:
        on-run-start hooks run on a connection dbt does not commit, and the models' threads must see it. -#}
    do $kho_collation$
    declare
        chosen text := 'ICU vi';
    begin
        if to_regcollation('reference.vietnamese') is not null then
            return;
        end if;
        create schema if not exists reference;
        begin
            create collation reference.vietnamese (provider = icu, locale = 'vi');
        exception when feature_not_supported then
            begin
                create collation reference.vietnamese (provider = libc, locale = 'vi_VN.utf8');
                chosen := 'the vi_VN.UTF-8 locale (this PostgreSQL has no ICU)';
            exception when invalid_parameter_value or external_routine_exception then
                create collation reference.vietnamese from "C";
                chosen := 'a copy of C, byte order: this PostgreSQL has neither ICU nor a vi_VN.UTF-8 locale';
            end;
        end;
        execute format('comment on collation reference.vietnamese is %L',
                       'Vietnamese sort order of the marts'' name columns (kho: dbt_project/macros/collation.sql): '
                       || chosen || '.');
    exception when unique_violation or duplicate_object then
        null;
    end
    $kho_collation$;
    commit
{%- endmacro %}
