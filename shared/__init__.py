"""Framework-free specification of every TwinVision task.

Nothing under ``shared`` imports torch or tensorflow: both twins import it, and
a test walks this package's imports to keep it that way.
"""
