"""``sencity sim``: a simulated city that feeds a running SenCity through its public
interfaces (``/ingest/v1`` provisioning, MQTT readings, the NGSI-LD and temporal APIs)."""
