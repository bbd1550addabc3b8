"""The job API (FastAPI): submit jobs, follow them, read documents; `create_app` builds it."""
