"""Ingestion: sensors over MQTT and HTTP, department files and transit feeds → the hub."""
