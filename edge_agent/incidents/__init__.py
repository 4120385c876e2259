"""The incident log: schema, store, outbox, ledger, retention and the review queries."""
