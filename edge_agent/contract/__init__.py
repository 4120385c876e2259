"""The wire contract: alert, ack and receipt JSON, topic names, ids and time formats, the schema."""
