"""The FastAPI server: the page, runtime files, wheels, models and the JSON API."""
