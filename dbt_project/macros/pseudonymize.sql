{#- The patient key: keyed hash (HMAC-SHA256, hex) of a direct identifier.

    duckdb: HMAC in SQL (RFC 2104: sha256(outer key || sha256(inner key || value))), the
    padded keys read from DuckDB variables that the dbt-duckdb plugin
    flows/cryoreg/transform/pseudonym_plugin.py sets from CRYOREG_PSEUDONYM_KEY; the key never appears in
    SQL. Without a key the query fails.
    spark: the same HMAC in Spark SQL, the padded keys read from session variables that
    flows/cryoreg/engine/spark.py declares on the session (bound as parameters, so the key
    never appears in SQL either). Without a key the query fails.
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

{% macro spark__pseudonymize(column) -%}
    case
        when cryoreg_hmac_outer is null
            then raise_error('the pseudonym key is empty: set CRYOREG_PSEUDONYM_KEY')
        else sha2(
            concat(
                cryoreg_hmac_outer,
                unhex(sha2(concat(cryoreg_hmac_inner, encode({{ column }}, 'utf-8')), 256))
            ),
            256
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
