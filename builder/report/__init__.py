"""The report folder of a task build: report.json, report.md and PNG plots."""
