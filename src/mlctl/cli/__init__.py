"""The front ends: `mlctl`, and the Fabric/Invoke collections, over one task table."""
