"""anabranchd: loads the datapath, runs the tick loop, serves the ZeroMQ API.

Kept light: importing this package must not import BCC or the model.
"""
