"""The wiring of ``edge-agent run``: the agent builds the stages of the other packages, runs the main loop
(watchdog, health, reloads) and stops them in order."""
