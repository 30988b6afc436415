"""Publish: the steward's store, the analysts' file swapped in whole, one run at a time."""
