"""Synth: synthetic registries (paper-calibrated or at scale) in the extract format."""
