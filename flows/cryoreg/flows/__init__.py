"""The Prefect flows: the nightly run, its deployment, its artifacts and temporary API."""
