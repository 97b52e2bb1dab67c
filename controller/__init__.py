"""Pure decision logic of the appliance: numpy arrays and dataclasses in, decisions out.

No sockets, no netlink, no clock reads; importing it loads neither BCC nor onnxruntime.
"""
