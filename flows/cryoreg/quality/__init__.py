"""Data quality: every check of a night, gathered in audit.check_results, one job per tool."""
