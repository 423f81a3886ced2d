"""Deployment tooling: deploy.py (serve or deploy from Python) and the Dockerfile of the Docker work pool."""
