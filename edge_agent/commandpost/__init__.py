"""The command post's side: the console that watches boxes and sends acks."""
