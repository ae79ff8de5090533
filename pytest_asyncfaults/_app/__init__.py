"""The app under test, in process: its lifespan runner and a transport that serves like uvicorn."""
