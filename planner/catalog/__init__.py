"""Finding and loading shipped and user data: presets, hardware profiles, regions."""
