"""The core stage: the messages on its queue, the site's rules, fusion, sensor states and snapshots; it writes what
happened to the incident log and puts the alerts in the outbox."""
