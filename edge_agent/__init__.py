"""The edge agent: composes the sensors, detectors and geofences libraries into the border-surveillance
service."""

__version__ = "0.1.0"
