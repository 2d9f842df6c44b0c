"""The base layer: what every other part uses. It imports nothing else of the project."""
