"""RQ jobs: module-level functions taking ids, idempotent, run inside the app context."""
