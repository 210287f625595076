"""Adapters to outside services. Each vendor SDK is imported in exactly one module here,
behind a small Protocol the rest of the code depends on; vendor errors are converted to
``app.core.errors`` at this edge."""
