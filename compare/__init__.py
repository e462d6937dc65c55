"""The side-by-side harness: parity, speed, size and quality of the twins, and the `twinvision` command."""
