"""driverkit: resolve, build, validate and publish syscall-capture drivers for many kernels."""

from pathlib import Path

__version__ = "0.1.0"

# The repository root holds templates/ and driver/; an editable install keeps them beside us.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"
DRIVER_DIR = PROJECT_ROOT / "driver"
KERNELS_DIR = PROJECT_ROOT / "kernels"
