"""The city context hub: NGSI-LD entities, queries and @context, on SQLite and PostgreSQL."""
