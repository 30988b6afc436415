{#- The patient key: keyed hash (HMAC-SHA256, hex) of a direct identifier.

    duckdb: HMAC in SQL (RFC 2104: sha256(outer key || sha256(inner key || value))), the
    padded keys read from DuckDB variables that the dbt-duckdb plugin
    flows/cryoreg/transform/pseudonym_plugin.py sets from CRYOREG_PSEUDONYM_KEY; the key never appears in
    SQL. Without a key the query fails.
    default: raises a compiler error on purpose. An unkeyed sha2(mrn) would be a portable
    stand-in, but MRNs are short and guessable, so an unkeyed hash is re-identifiable by
    hashing every candidate MRN. Another adapter must provide <adapter>__pseudonymize with
    its own keyed HMAC. -#}
{% macro pseudonymize(column) -%}
    {{ return(adapter.dispatch('pseudonymize', 'cryoreg')(column)) }}
{%- endmacro %}

{% macro duckdb__pseudonymize(column) -%}
    case
        when getvariable('cryoreg_hmac_outer') is null
            then error('the pseudonym key is empty: set CRYOREG_PSEUDONYM_KEY')
        else sha256(
            getvariable('cryoreg_hmac_outer')
            || unhex(sha256(getvariable('cryoreg_hmac_inner') || encode({{ column }})))
        )
    end
{%- endmacro %}

{% macro default__pseudonymize(column) -%}
    {{ exceptions.raise_compiler_error(
        "pseudonymize(): no keyed-hash (HMAC) implementation for adapter '"
        ~ adapter.type() ~ "'; add " ~ adapter.type()
        ~ "__pseudonymize (an unkeyed hash of an MRN is re-identifiable)"
    ) }}
{%- endmacro %}
