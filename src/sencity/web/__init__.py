"""The web layer: a thin ASGI adapter over the core, the login page and (later) the IOC UI."""
