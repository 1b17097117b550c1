"""NGSI-LD subscriptions: matching entity changes and delivering notifications."""
