"""CI helpers: Debian kernel packages for boot tests and the QEMU/TCG boot harness."""
