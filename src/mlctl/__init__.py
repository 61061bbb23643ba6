"""mlctl: deploy, check, diagnose, restart and roll back Django applications over SSH."""

__version__ = "0.1.0"
