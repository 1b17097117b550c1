"""Rules, alarms and notifications: conditions evaluated on the hub's change feed,
alarms stored as ``Alert`` entities, escalation and notification dispatch."""
