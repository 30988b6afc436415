"""Report: what a night's results look like to people (report.html, text lines)."""
