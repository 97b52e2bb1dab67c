/* SPDX-License-Identifier: GPL-2.0 */
/*
 * datapath.h: the contract between the kernel half (datapath.bpf.c) and user
 * space.  Every map key and value is defined here and only here; its one Python
 * view is anabranch.daemon.kstructs, and a root test checks that the sizes and
 * offsets there agree with what BCC compiled from this file.
 *
 * Structs carry explicit padding (`reserved`) so the layout is the same on every
 * compiler and the Python view never guesses.
 */
#ifndef ANABRANCH_DATAPATH_H
#define ANABRANCH_DATAPATH_H

/* Compile-time knobs, set by the loader with -D (see daemon/datapath.py). */

/* Concurrent flows tracked; the LRU evicts the least recently seen beyond it. */
#ifndef AB_FLOW_MAP_SIZE
#define AB_FLOW_MAP_SIZE 65536
#endif

/* Gateway ports the program may be attached to (LAN and WAN together). */
#define AB_PORT_MAP_SIZE 64

/* Direction of a packet relative to the gateway's LAN. */
#define AB_DIR_UP   0 /* LAN -> WAN: leaves through a WAN port */
#define AB_DIR_DOWN 1 /* WAN -> LAN: arrives through a WAN port */

/* Role of a port, written by the daemon into the ports map at attach. */
#define AB_ROLE_LAN 1
#define AB_ROLE_WAN 2

/* Per-port behaviour flags (struct ab_port.flags). */
#define AB_PORT_COUNT 0x01 /* count flows crossing this port */

/* Indices of the per-CPU error counters (errors map).  Errors are data: the
 * program never prints, it counts, and user space publishes the counts. */
#define AB_ERR_TRUNCATED   0 /* a header ended past the packet's end */
#define AB_ERR_FRAGMENT    1 /* IP fragment: no L4 ports, counted as proto-only flow */
#define AB_ERR_FLOW_INSERT 2 /* the flow map refused a new entry */
#define AB_ERR_NOT_IP      3 /* neither IPv4 nor IPv6 (ARP, LLDP...): passed, not counted */
#define AB_ERR_MAX         4

/* Address family as stored in a flow key. */
#define AB_FAMILY_V4 4
#define AB_FAMILY_V6 6

/*
 * A flow is keyed by the WAN port it crosses (the path) and its LAN-side and
 * remote endpoints, so both directions of a connection share one entry and the
 * gateway counts each forwarded packet exactly once: at the WAN port, egress for
 * upload and ingress for download.  IPv4 addresses occupy the first 4 bytes of
 * the 16-byte fields, the rest zero.  Ports are in host byte order; ICMP flows
 * have zero ports.
 */
struct ab_flow_key {
	__u32 ifindex;        /* WAN port */
	__u8  family;         /* AB_FAMILY_V4 or AB_FAMILY_V6 */
	__u8  proto;          /* IPPROTO_* */
	__u16 lan_port;
	__u16 remote_port;
	__u16 reserved;
	__u8  lan_addr[16];
	__u8  remote_addr[16];
};

struct ab_dir_counters {
	__u64 packets; /* wire packets: skb->gso_segs, at least 1 */
	__u64 bytes;   /* skb->len, link-layer header included */
};

/* Counters are monotonic: user space takes deltas and never clears them
 * (a read-then-clear would lose what is counted in between). */
struct ab_flow {
	struct ab_dir_counters dir[2]; /* indexed by AB_DIR_* */
	__u64 first_seen_ns;          /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 last_seen_ns;
	__u8  tcp_flags[2];           /* TCP flags seen, OR-ed, per direction */
	__u8  opened_by;              /* AB_DIR_* of the first packet seen */
	__u8  reserved[5];
};

struct ab_port {
	__u8  role;   /* AB_ROLE_* */
	__u8  flags;  /* AB_PORT_* */
	__u16 reserved;
};

#endif /* ANABRANCH_DATAPATH_H */
