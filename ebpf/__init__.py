"""The kernel half of the appliance, shipped as package data (datapath.bpf.c, datapath.h)."""
