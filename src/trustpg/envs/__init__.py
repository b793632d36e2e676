"""Environment sources (ids, objects, factories), exact env state, the EnvPool backend and the
step watchdog."""
