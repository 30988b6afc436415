"""cryoreg: nightly registry warehouse and outcome analysis for liver cryoablation."""

__version__ = "0.1.0"
