"""SenCity: an open-source smart-city platform (NGSI-LD context hub, ingestion, IOC)."""

__version__ = "0.1.0"
