"""Operator tools: doctor, model files, detection and zone previews."""
