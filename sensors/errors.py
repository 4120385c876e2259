"""Errors the sensor library raises."""


class SensorError(RuntimeError):
    """A sensor cannot be opened or read; the message names the sensor, the source and the fix."""
