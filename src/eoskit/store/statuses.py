"""The values of ``summary.json["status"]``."""

# a run is "running" until it ends in one of the others
STATUSES = ("running", "completed", "diverged", "interrupted", "failed")
FINAL_STATUSES = ("completed", "diverged")  # a resume (and a resumed sweep) leaves these alone
