"""The application core: routes, the event bus, hook points and the platform object."""
