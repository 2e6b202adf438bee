"""Package metadata lives in setup.cfg; this file keeps legacy installers working."""
from setuptools import setup

setup()
