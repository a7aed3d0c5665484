"""python -m pyhost_scgi_launcher, as the built zipapp runs it."""

from pyhost_scgi_launcher.cli import main

main()
