"""Only the compiled part of the package lives here; everything else is in pyproject.toml.

`runtime.driver._fastdecode` is the batch record decoder (see its source for why it is C).
The pure-Python decoder stays complete, and tests hold the two to the same results.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "runtime.driver._fastdecode",
            ["runtime/driver/_fastdecode.c"],
            # The record header the driver writes, from the one generated schema header.
            include_dirs=["driver/include"],
            depends=["driver/include/rtcap_schema.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        )
    ]
)
