"""Analysis: the paper's statistics from the published marts."""
