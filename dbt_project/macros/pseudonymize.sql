{#- The patient key: keyed hash (HMAC-SHA256, hex) of a direct identifier.

    duckdb: calls cryoreg_pseudonym(), registered by the dbt-duckdb plugin
    flows/cryoreg/dbt_plugin.py with the key from CRYOREG_PSEUDONYM_KEY; the key never
    appears in SQL.
    default: raises a compiler error on purpose. An unkeyed sha2(mrn) would be a portable
    stand-in, but MRNs are short and guessable, so an unkeyed hash is re-identifiable by
    hashing every candidate MRN. Another adapter must provide <adapter>__pseudonymize with
    its own keyed HMAC. -#}
{% macro pseudonymize(column) -%}
    {{ return(adapter.dispatch('pseudonymize', 'cryoreg')(column)) }}
{%- endmacro %}

{% macro duckdb__pseudonymize(column) -%}
    cryoreg_pseudonym({{ column }})
{%- endmacro %}

{% macro default__pseudonymize(column) -%}
    {{ exceptions.raise_compiler_error(
        "pseudonymize(): no keyed-hash (HMAC) implementation for adapter '"
        ~ adapter.type() ~ "'; add " ~ adapter.type()
        ~ "__pseudonymize (an unkeyed hash of an MRN is re-identifiable)"
    ) }}
{%- endmacro %}
