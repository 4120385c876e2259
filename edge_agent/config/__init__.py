"""The configuration: YAML read with bounds, pydantic models per area, cross-checks.

The defaults here are the ones a verb needs before any model is built: importing this package root costs nothing
(no pydantic), so the command line can name them in its help and stay quick to start."""

DEFAULT_PREFIX = "border"  # the first topic level, {prefix}/{site}/{box}/..., unless config or command line say
