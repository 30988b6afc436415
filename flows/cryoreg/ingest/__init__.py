"""Ingest: find new extract folders and append their rows, as received, to the ledger."""
