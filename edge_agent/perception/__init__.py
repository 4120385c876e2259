"""Perception: a camera's frames to classified tracks placed on the ground, in that camera's detection stage
(the detector and tracker built from the config, the camera's geometry, the classification, the stage itself)."""
