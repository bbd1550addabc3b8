"""SQL persistence: models, engine and sessions, and the idempotent repository functions."""
