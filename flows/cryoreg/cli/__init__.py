"""The `cryoreg` command and what it prints."""
