"""Delivery: the outbox to MQTT (the publisher and its paho client), and what comes back (acks, receipts)."""
