"""Transform: the dbt project built on the registry's store (staging to marts)."""
