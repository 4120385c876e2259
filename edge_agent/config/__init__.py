"""The configuration: YAML read with bounds, pydantic models per area, cross-checks."""
