"""The running agent: stages, the core, site rules, fusion, the publisher, health."""
