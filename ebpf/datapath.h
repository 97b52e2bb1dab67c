/* SPDX-License-Identifier: GPL-2.0 */
/*
 * datapath.h: the contract between the kernel half (datapath.bpf.c) and user
 * space.  Every map key and value and every event is defined here and only
 * here; its one Python view is anabranch.daemon.kstructs, and a root test checks
 * that the sizes and offsets there agree with what BCC compiled from this file.
 *
 * Structs carry explicit padding (`reserved`) so the layout is the same on every
 * compiler and the Python view never guesses.
 */
#ifndef ANABRANCH_DATAPATH_H
#define ANABRANCH_DATAPATH_H

/* ---- Compile-time knobs, set by the loader with -D (see daemon/datapath.py). */

/* Flow slots (a multiple of AB_FLOW_WAYS): see struct ab_flow_slot. */
#ifndef AB_FLOW_MAP_SIZE
#define AB_FLOW_MAP_SIZE 65536
#endif

/* Slots in a set: a flow lives in one of the two sets a hash of its key picks
 * (see find_slot in datapath.bpf.c).  In a full table a new flow takes the slot
 * of the flow idle longest in those sets, as an LRU would evict. */
#define AB_FLOW_WAYS 4

/* The key hash's secret seed (64 bits): random per load, so no remote host can
 * aim its flows at one set to evict another's.  The loader passes it. */
#ifndef AB_FLOW_SEED
#define AB_FLOW_SEED 0x9e3779b97f4a7c15ULL
#endif

/* Payload bytes copied into a snippet event (a power of two).  512 rather than 256: a TLS
 * ClientHello from a browser with randomised extension order often puts the SNI
 * past byte 256. */
#ifndef AB_SNIPPET_SIZE
#define AB_SNIPPET_SIZE 512
#endif

/* Payload packets per direction of a new flow that get a snippet event. */
#ifndef AB_SNIPPETS_PER_DIR
#define AB_SNIPPETS_PER_DIR 2
#endif

/* Ring buffer size in pages (power of two): bounds events between two drains. */
#ifndef AB_EVENT_PAGES
#define AB_EVENT_PAGES 256
#endif

/* AB_CLOCK_SKB_TSTAMP: when defined, "now" is skb->tstamp instead of
 * bpf_ktime_get_ns().  The offline analyzer compiles this variant and passes each
 * captured packet's timestamp in the BPF_PROG_TEST_RUN context. */

/* Gateway ports the program may be attached to (LAN and WAN together). */
#define AB_PORT_MAP_SIZE 64

/* Ports with an ifindex below this are found in the port_index array (a lookup
 * the verifier inlines: no hash, no helper call, on every packet of every
 * port); the rare port with a larger ifindex (ifindexes grow as devices come
 * and go) is in the ports hash. */
#ifndef AB_PORT_INDEX_SIZE
#define AB_PORT_INDEX_SIZE 4096
#endif

/* Per-flow class overrides written by user space. */
#define AB_OVERRIDE_MAP_SIZE 16384

/* MPTCP connection tokens with a class (joined subflows inherit it). */
#define AB_TOKEN_MAP_SIZE 16384

/* Prefix rules per address family. */
#define AB_PREFIX_MAP_SIZE 4096

/* Class ids are an index into the classes map. */
#define AB_CLASS_MAX 16

/* ---- Fixed numbering shared with user space (kstructs.py). */

/* Direction of a packet relative to the gateway's LAN. */
#define AB_DIR_UP   0 /* LAN -> WAN: leaves through a WAN port */
#define AB_DIR_DOWN 1 /* WAN -> LAN: arrives through a WAN port */

/* Role of a port, written by the daemon into the ports map at attach. */
#define AB_ROLE_LAN 1
#define AB_ROLE_WAN 2

/* Per-port behaviour flags (struct ab_port.flags). */
#define AB_PORT_COUNT 0x01 /* count flows crossing this port (WAN) */
#define AB_PORT_MARK  0x02 /* rewrite DSCP and set skb->priority; off = count-only */

/* Default classes.  HTB classid of class N is 1:(0x10 + N) unless the classes
 * map says otherwise (struct ab_class.priority is written by user space). */
#define AB_CLASS_UNCLASSIFIED 0
#define AB_CLASS_VOICE        1
#define AB_CLASS_VIDEO        2
#define AB_CLASS_INTERACTIVE  3
#define AB_CLASS_FILE         4
#define AB_CLASS_BACKGROUND   5

/* Why a flow has its class (struct ab_flow.class_reason). */
#define AB_REASON_NONE     0
#define AB_REASON_DEFAULT  1 /* nothing matched: ab_config.default_class */
#define AB_REASON_PORT     2
#define AB_REASON_PREFIX   3
#define AB_REASON_TOKEN    4 /* MP_JOIN token of a connection with a class */
#define AB_REASON_OVERRIDE 5 /* per-flow override from user space */

/* Indices of the per-CPU error counters (errors map).  Errors are data: the
 * program never prints, it counts, and user space publishes the counts. */
#define AB_ERR_TRUNCATED   0 /* a header ended past the packet's end */
#define AB_ERR_FRAGMENT    1 /* IP fragment: no L4 ports, counted as proto-only flow */
#define AB_ERR_FLOW_INSERT 2 /* another CPU held the slot a new flow needed: passed uncounted */
#define AB_ERR_NOT_IP      3 /* neither IPv4 nor IPv6 (ARP, LLDP...): passed, not counted */
#define AB_ERR_EVENT_LOST  4 /* the ring buffer was full: an event was dropped */
#define AB_ERR_MALFORMED   5 /* bad header length or TCP option: parsed as far as sane */
#define AB_ERR_MARK        6 /* a DSCP rewrite helper failed (packet passed unchanged) */
#define AB_ERR_MAX         7

/* Address family as stored in a flow key. */
#define AB_FAMILY_V4 4
#define AB_FAMILY_V6 6

/* MPTCP option subtypes (RFC 8684 section 3); bit N of ab_flow.mptcp_subtypes
 * is set when subtype N was seen on the flow. */
#define AB_MPTCP_CAPABLE   0
#define AB_MPTCP_JOIN      1
#define AB_MPTCP_DSS       2
#define AB_MPTCP_ADD_ADDR  3
#define AB_MPTCP_RM_ADDR   4
#define AB_MPTCP_PRIO      5
#define AB_MPTCP_FAIL      6
#define AB_MPTCP_FASTCLOSE 7
#define AB_MPTCP_TCPRST    8
#define AB_MPTCP_VERSION_NONE 0xff /* ab_flow.mptcp_version before MP_CAPABLE */

/* The longest TCP option area (60-byte header minus 20). */
#define AB_TCP_OPTIONS_MAX 40

/* Event types: the first byte of every event in the ring buffer. */
#define AB_EVENT_NEW_FLOW 1
#define AB_EVENT_FLOW_END 2
#define AB_EVENT_PAYLOAD  3
#define AB_EVENT_MPTCP    4

/* ab_event_flow.end_reason */
#define AB_END_FIN 1
#define AB_END_RST 2

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

/*
 * One direction of a flow, one cache line: written on every packet only by the
 * CPU that carries that direction, so the two directions of a busy flow (data
 * on one CPU, its ACKs on another) never fight over a line.  What the other
 * direction needs from it crosses once per RTT sample, not once per packet.
 *
 * RTT is passive, as pping does it: a TSval is remembered with the time it
 * first passed, and the packet in the other direction that echoes it (TSecr)
 * closes the sample.  So the rtt of AB_DIR_UP is the gateway <-> remote half
 * and of AB_DIR_DOWN the gateway <-> LAN host half; their sum is the end-to-end
 * RTT.  One TSval per direction is outstanding at a time (one sample per round
 * trip at most).  Its sender keeps it in ts_sent and ts_state; the watch for
 * its echo (echo_tsval, echo_ns, echo_armed) lives in the *other* direction's
 * line, because that is the CPU that reads it on every packet.  The echoing
 * side writes the sample (rtt_*) and ts_state back into the sender's line.
 */
struct ab_flow_dir {
	__u64 packets;        /* wire packets: skb->gso_segs, at least 1 */
	__u64 bytes;          /* skb->len, link-layer header included */
	__u32 next_seq;       /* highest seq + payload sent: payload below it is a retransmission */
	__u32 retransmits;    /* payload packets (segments) that started below next_seq */
	__u32 ts_sent;        /* this direction's TSval waiting for its echo */
	__u32 echo_tsval;     /* the other direction's TSval this one's TSecr would echo */
	__u64 echo_ns;        /* precise CLOCK_MONOTONIC when echo_tsval first passed */
	__u32 rtt_last_ns;    /* RTTs of this direction's TSvals; saturate at 2^32-1 ns (4.3 s) */
	__u32 rtt_min_ns;
	__u32 rtt_srtt_ns;    /* smoothed as TCP does: srtt += (sample - srtt) / 8 */
	__u32 rtt_samples;
	__u8  seq_valid;      /* next_seq holds a value */
	__u8  ts_state;       /* AB_TS_*: of ts_sent */
	__u8  echo_armed;     /* echo_tsval is being watched for */
	__u8  tcp_flags;      /* TCP flags seen, OR-ed */
	__u8  snippets;       /* snippet events sent */
	__u8  reserved[3];
};

/* ab_flow_dir.ts_state */
#define AB_TS_NONE    0 /* no TSval seen yet */
#define AB_TS_WAITING 1 /* ts_sent waits for its echo */
#define AB_TS_DONE    2 /* echoed (or passed unseen): the next newer TSval starts a sample */

/* Counters are monotonic: user space takes deltas and never clears them
 * (a read-then-clear would lose what is counted in between).
 *
 * Laid out for its slot (struct ab_flow_slot): the first 16 bytes share the
 * slot's first line with the key, which every packet reads, so only fields
 * written once per flow or once per tick go there; the second line holds what
 * is written once per flow or rarely; each direction then has a line of its
 * own (struct ab_flow_dir). */
struct ab_flow {
	__u64 last_seen_ns;           /* CLOCK_MONOTONIC at tick resolution (jiffies) */
	__u32 policy_generation;      /* ab_config.policy_generation at classification */
	__u8  opened_by;              /* AB_DIR_* of the first packet seen */
	__u8  class_id;               /* AB_CLASS_* or a user class < AB_CLASS_MAX */
	__u8  class_reason;           /* AB_REASON_* */
	__u8  mptcp_version;          /* from MP_CAPABLE, else AB_MPTCP_VERSION_NONE */
	__u64 first_seen_ns;
	__u32 join_token;             /* receiver token of this subflow's MP_JOIN SYN, else 0 */
	__u16 mptcp_subtypes;         /* bit AB_MPTCP_* set when seen */
	__u16 reserved;
	__u8  reserved2[48];          /* each direction starts a line */
	struct ab_flow_dir dir[2];    /* indexed by AB_DIR_* */
};

/* ab_flow_slot.state */
#define AB_SLOT_EMPTY   0
#define AB_SLOT_CLAIMED 1 /* a CPU is writing a new flow's key and value into it */
#define AB_SLOT_LIVE    2

/*
 * The flow table is an array of these, AB_FLOW_WAYS per set, and user space
 * maps it (BPF_F_MMAPABLE): a sweep reads the live slots in place, and forgets
 * an idle flow by setting its slot EMPTY.  Four cache lines, each slot starting
 * one: a packet of a known flow reads the first (key, state and the flow's
 * class) and writes its direction's, two lines where a kernel hash map's
 * lookup alone touches five (bucket, element header, key, value).
 */
struct ab_flow_slot {
	union {
		struct {
			struct ab_flow_key key;
			__u32 state;  /* AB_SLOT_* */
		};
		/* The key's last word with the state: BPF has 64-bit compare-and-swap
		 * and exchange on every CPU version BCC builds for, 32-bit not. */
		__u64 words[6];
	};
	struct ab_flow flow;
};

struct ab_port {
	__u8  role;   /* AB_ROLE_* */
	__u8  flags;  /* AB_PORT_* */
	__u16 reserved;
};

/* One-entry config map: run-time knobs. */
struct ab_config {
	__u32 policy_generation; /* bumped by user space after any policy change:
	                          * flows re-evaluate their class on their next packet */
	__u8  default_class;     /* class of flows no rule matches */
	__u8  reserved[3];
	/* The per-packet clock, CLOCK_MONOTONIC at tick resolution from jiffies:
	 * jiffies_base_ns + jiffies * jiffy_ns (the kernel advances jiffies by
	 * exactly one tick of CLOCK_MONOTONIC).  Written by user space from
	 * ab_clock_probe samples; jiffy_ns 0 = not calibrated: the coarse clock. */
	__u64 jiffy_ns;
	__s64 jiffies_base_ns;   /* CLOCK_MONOTONIC at jiffy 0 (negative: jiffies start high) */
};

/* clock_probe map: one sample of both clocks, written by ab_clock_probe. */
struct ab_clock_sample {
	__u64 jiffies;
	__u64 monotonic_ns;      /* read after jiffies: never before that jiffy began */
};

/* classes map, indexed by class id. */
#define AB_CLASS_SET_DSCP 0x01 /* rewrite DSCP to ab_class.dscp */
#define AB_CLASS_SET_PRIO 0x02 /* set skb->priority to ab_class.priority */
struct ab_class {
	__u32 priority; /* HTB classid as tc handle (major << 16 | minor), e.g. 0x10011 = 1:11 */
	__u8  dscp;     /* 0..63 */
	__u8  flags;    /* AB_CLASS_SET_* */
	__u16 reserved;
};

/* port_classes map, indexed by port number: the class of each port per
 * protocol (0 = no rule) and the rank of the rule that gave it (its place in
 * the ordered rule list: of the prefix and port rules that match a flow, the
 * lowest rank wins, as the controller's first match does).  User space expands
 * port ranges into it. */
struct ab_port_class {
	__u8  tcp;
	__u8  udp;
	__u8  other; /* SCTP, DCCP, UDP-Lite: any protocol with ports */
	__u8  reserved;
	__u16 tcp_rank;
	__u16 udp_rank;
	__u16 other_rank;
	__u16 reserved2;
};

/* LPM trie keys: prefixlen first, as the kernel requires. */
struct ab_prefix_v4 {
	__u32 prefixlen;
	__u8  addr[4];
};

struct ab_prefix_v6 {
	__u32 prefixlen;
	__u8  addr[16];
};

/* Value of the prefix, override and token maps. */
struct ab_class_rule {
	__u8  class_id;
	__u8  reserved;
	__u16 rank;   /* prefix rules: the rule's place in the ordered list (lowest wins
	               * over a port rule too); overrides and tokens: unused */
};

/* LAN egress knows no flow (the key needs the WAN port the packet came in by);
 * the DSCP written at WAN ingress says the class, and this maps it to the HTB
 * classid: dscp_priority[dscp] = classid, 0 = leave skb->priority alone. */
#define AB_DSCP_MAX 64

/* ---- Events: one ring buffer carries a union of these; each starts with the
 * same header whose first byte is the event type. */
struct ab_event_header {
	__u8  event_type;     /* AB_EVENT_* */
	__u8  direction;      /* AB_DIR_* of the packet that caused it */
	__u8  reserved[6];
	__u64 ts_ns;
	struct ab_flow_key key;
	__u32 reserved2;
};

/* AB_EVENT_NEW_FLOW and AB_EVENT_FLOW_END */
struct ab_event_flow {
	struct ab_event_header header;
	__u8 class_id;
	__u8 class_reason;
	__u8 end_reason;      /* AB_END_* (flow end only) */
	__u8 reserved[5];
};

/* AB_EVENT_PAYLOAD: the first payload bytes of a new flow, or a DNS answer. */
struct ab_event_payload {
	struct ab_event_header header;
	__u32 payload_len;    /* payload bytes in the packet */
	__u16 captured;       /* bytes in `payload`, at most AB_SNIPPET_SIZE */
	__u8  dns_answer;     /* UDP from port 53 */
	__u8  reserved;
	__u8  payload[AB_SNIPPET_SIZE];
};

/* AB_EVENT_MPTCP: an MPTCP option worth telling user space about, raw (user
 * space decodes it): MP_CAPABLE carrying keys, MP_JOIN on a SYN, ADD_ADDR,
 * REMOVE_ADDR, MP_FASTCLOSE, MP_TCPRST. */
struct ab_event_mptcp {
	struct ab_event_header header;
	__u8  subtype;        /* AB_MPTCP_* */
	__u8  version;        /* the flow's MPTCP version, AB_MPTCP_VERSION_NONE if unknown */
	__u8  option_len;     /* bytes in `option` (the option's length field, capped) */
	__u8  tcp_flags;
	__u8  reserved[4];
	__u8  option[AB_TCP_OPTIONS_MAX];
};

#endif /* ANABRANCH_DATAPATH_H */
