"""WSGI entry point: ``gunicorn wsgi:app`` or ``flask --app wsgi ...``."""

import gc

from portal import create_app

app = create_app()

# What exists now (the app, SQLAlchemy's mappers and metadata, the compiled templates and
# schemas: some 240,000 objects) lives as long as the process. Frozen, the collector's full
# passes skip it and scan only what requests made since: each was a pause of about 185 ms,
# every few thousand requests, which was most of the API's 99th percentile.
gc.freeze()
