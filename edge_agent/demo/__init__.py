"""The demo: the whole agent on the synthetic scene with scripted sensors and a broker."""
