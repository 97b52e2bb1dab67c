// SPDX-License-Identifier: GPL-2.0
/*
 * datapath.bpf.c: Anabranch's kernel half, a tc clsact program on every gateway
 * port.  It parses each packet (Ethernet, up to two VLAN tags, PPPoE, IPv4 with options,
 * IPv6 with its usual extension headers, TCP/UDP/ICMP, TCP options for MPTCP and
 * timestamps), counts it into the flow of the WAN port it crosses, classifies
 * new flows from the policy maps, marks packets (DSCP, skb->priority for HTB)
 * and reports what user space needs through one ring buffer.  It never drops or
 * delays a packet: every path returns TC_ACT_OK, and what it cannot parse it
 * counts as an error and passes.
 *
 * Compiled at start-up by BCC (daemon/datapath.py) with -I pointing at this
 * folder and -D for the knobs in datapath.h.  Uses only UAPI headers, so the
 * distribution's generic kernel headers suffice.
 *
 * Cost per packet on a WAN port: inlined array lookups (port, config, class),
 * one hash lookup in the flow map (plus the policy lookups and an insert for a
 * new flow), two atomic adds and jiffies for the clock; for TCP the timestamps
 * are read in place, and only other option layouts (SYN, MPTCP) are copied with
 * bpf_skb_load_bytes and walked.  On a LAN port: nothing at ingress (its own
 * entry point, ab_lan_ingress); at egress the port lookup and, with marking on,
 * the L2 headers, the IP header's first bytes and one more array lookup.  Under
 * forwarding load nearly every line these touch is cold, so the count of lines
 * touched is the cost (tests/bench/ab_datapath.py compares builds).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>

#include "datapath.h"

BPF_F_TABLE("array", __u32, struct ab_flow_slot, flows, AB_FLOW_MAP_SIZE, BPF_F_MMAPABLE);
/* One per set of the flow table: held while a new flow whose first set it is takes a slot. */
BPF_ARRAY(flow_locks, __u64, AB_FLOW_MAP_SIZE / AB_FLOW_WAYS);
BPF_ARRAY(port_index, struct ab_port, AB_PORT_INDEX_SIZE);
BPF_HASH(ports, __u32, struct ab_port, AB_PORT_MAP_SIZE);
BPF_PERCPU_ARRAY(errors, __u64, AB_ERR_MAX);
BPF_ARRAY(config, struct ab_config, 1);
BPF_ARRAY(clock_probe, struct ab_clock_sample, 1);
BPF_ARRAY(classes, struct ab_class, AB_CLASS_MAX);
BPF_ARRAY(port_classes, struct ab_port_class, 65536);
BPF_ARRAY(dscp_priority, __u32, AB_DSCP_MAX);
BPF_HASH(overrides, struct ab_flow_key, struct ab_class_rule, AB_OVERRIDE_MAP_SIZE);
BPF_HASH(tokens, __u32, struct ab_class_rule, AB_TOKEN_MAP_SIZE);
BPF_LPM_TRIE(prefixes_v4, struct ab_prefix_v4, struct ab_class_rule, AB_PREFIX_MAP_SIZE);
BPF_LPM_TRIE(prefixes_v6, struct ab_prefix_v6, struct ab_class_rule, AB_PREFIX_MAP_SIZE);
BPF_RINGBUF_OUTPUT(events, AB_EVENT_PAGES);

#define VLAN_HLEN 4
#define PPPOE_HLEN 8 /* PPPoE session header (6) and PPP protocol (2) */
#define PPP_IPV4 0x0021
#define PPP_IPV6 0x0057
#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT_HEADERS 4
#define IP_FRAGMENT_MASK 0x3fff /* MF flag and fragment offset */
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_TIMESTAMP 8
#define TCPOPT_MPTCP 30
/* The option area's first word when it is NOP, NOP, TIMESTAMP (kind 8, length 10). */
#define NOP_NOP_TIMESTAMP ((TCPOPT_NOP << 24) | (TCPOPT_NOP << 16) | (TCPOPT_TIMESTAMP << 8) | 10)
#define OPT_BUF 64 /* power of two >= AB_TCP_OPTIONS_MAX: indices are masked into it */
#define MAX_MPTCP_OPTIONS 2
/* Options walked per packet: real stacks send at most 7 or 8 (SYN: MSS, SACK_PERM,
 * TS, NOP, WS, MPTCP); a longer run of NOP padding ends the walk early. */
#define MAX_OPTION_STEPS 16
#define DNS_PORT 53

struct packet {
	__u8  family;
	__u8  proto;
	__u8  tcp_flags;
	__u8  tos;            /* IPv4 TOS or IPv6 traffic class */
	__u16 sport;
	__u16 dport;
	__u16 l3_off;
	__u16 l4_off;
	__u16 payload_off;
	__u8  has_ports;
	__u8  has_ts;
	__u32 payload_len;
	__u32 frame_len;      /* bytes counted for this packet */
	__u32 seq;
	__u32 tsval;
	__u32 tsecr;
	__u8  mptcp_count;    /* MPTCP options found by the option walk */
	__u8  opt_len;        /* TCP option bytes left for the option walk */
	__u8  reserved2[2];
};

/* The TCP option walk, for option areas other than NOP NOP TIMESTAMP: the bytes
 * copied and the walk's state, in per-CPU memory whose contents the verifier
 * does not track, so the states of the walk's steps stay prunable. */
struct tcp_options {
	__u8  mptcp_off[MAX_MPTCP_OPTIONS]; /* offsets into bytes of MPTCP options */
	__u8  mptcp_count;
	__u8  ts_off;         /* offset of the TSval in bytes, 0 = no timestamps */
	__u8  cursor;         /* the walk's position */
	__u8  reserved[3];
	__u8  bytes[OPT_BUF]; /* the TCP option area, copied */
};

/* Per-CPU scratch for the TCP option walk.  The parsed packet itself lives on
 * the stack, whose lines the kernel's own calls keep warm. */
BPF_PERCPU_ARRAY(scratch_options, struct tcp_options, 1);

/* Keys of the prefix tries, built in per-CPU scratch: classification runs once
 * per flow, and the stack is full. */
struct prefix_keys {
	struct ab_prefix_v4 v4;
	struct ab_prefix_v6 v6;
};
BPF_PERCPU_ARRAY(scratch_prefix, struct prefix_keys, 1);

static __always_inline void count_error(__u32 index)
{
	__u64 *counter = errors.lookup(&index);

	if (counter)
		*counter += 1; /* per-CPU slot: no atomic needed */
}

/* Two clocks, both CLOCK_MONOTONIC: first/last seen and event times take the
 * coarse one (tick resolution), RTT samples the precise one, read only when a
 * sample starts or ends.  The coarse one is jiffies scaled by the calibration
 * in the config: jiffies is one word every CPU reads all the time, where
 * bpf_ktime_get_coarse_ns() reads the timekeeper's lines, cold under
 * forwarding load (about 50 ns per WAN packet, tests/bench/ab_datapath.py). */
static __always_inline __u64 clock_coarse(struct __sk_buff *skb, struct ab_config *cfg)
{
#ifdef AB_CLOCK_SKB_TSTAMP
	return skb->tstamp;
#else
	if (cfg->jiffy_ns)
		return (__u64)cfg->jiffies_base_ns + bpf_jiffies64() * cfg->jiffy_ns;
	return bpf_ktime_get_coarse_ns();
#endif
}

static __always_inline __u64 clock_precise(struct __sk_buff *skb)
{
#ifdef AB_CLOCK_SKB_TSTAMP
	return skb->tstamp;
#else
	return bpf_ktime_get_ns();
#endif
}

/* Skip Ethernet, VLAN tags and a PPPoE session header: the L3 header's start
 * (and its protocol in *eth_proto), or NULL when the frame ends first. */
static __always_inline void *skip_l2(void *data, void *data_end, __u16 *eth_proto_out)
{
	struct ethhdr *eth = data;
	void *cursor;
	__u16 eth_proto;

	if ((void *)(eth + 1) > data_end) {
		count_error(AB_ERR_TRUNCATED);
		return NULL;
	}
	eth_proto = eth->h_proto;
	cursor = eth + 1;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (eth_proto != bpf_htons(ETH_P_8021Q) && eth_proto != bpf_htons(ETH_P_8021AD))
			break;
		if (cursor + VLAN_HLEN > data_end) {
			count_error(AB_ERR_TRUNCATED);
			return NULL;
		}
		/* TCI (2 bytes) then the encapsulated protocol (2 bytes). */
		eth_proto = *(__u16 *)(cursor + 2);
		cursor += VLAN_HLEN;
	}
	/* PPPoE session (DSL uplinks): 6-byte PPPoE header, then the PPP protocol. */
	if (eth_proto == bpf_htons(ETH_P_PPP_SES)) {
		__u16 ppp_proto;

		if (cursor + PPPOE_HLEN > data_end) {
			count_error(AB_ERR_TRUNCATED);
			return NULL;
		}
		ppp_proto = *(__u16 *)(cursor + 6);
		if (ppp_proto == bpf_htons(PPP_IPV4))
			eth_proto = bpf_htons(ETH_P_IP);
		else if (ppp_proto == bpf_htons(PPP_IPV6))
			eth_proto = bpf_htons(ETH_P_IPV6);
		cursor += PPPOE_HLEN;
	}
	*eth_proto_out = eth_proto;
	return cursor;
}

/* Parse L2/L3/L4 headers into *pkt, and the addresses straight into the flow's
 * key by direction; returns 0 when the packet belongs to a flow. */
static __always_inline int parse(struct __sk_buff *skb, struct packet *pkt, struct ab_flow_key *key,
				 __u8 dir)
{
	__u8 *src = dir == AB_DIR_UP ? key->lan_addr : key->remote_addr;
	__u8 *dst = dir == AB_DIR_UP ? key->remote_addr : key->lan_addr;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	void *cursor;
	__u16 eth_proto;
	__u32 ip_len = 0; /* L3 length from the IP header, 0 when unknown (big TCP) */
	__u8 l4proto;

	cursor = skip_l2(data, data_end, &eth_proto);
	if (!cursor)
		return -1;
	pkt->l3_off = cursor - data;

	if (eth_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cursor;

		if ((void *)(ip + 1) > data_end) {
			count_error(AB_ERR_TRUNCATED);
			return -1;
		}
		if (ip->ihl < 5) {
			count_error(AB_ERR_MALFORMED);
			return -1;
		}
		pkt->family = AB_FAMILY_V4;
		pkt->tos = ip->tos;
		__builtin_memcpy(src, &ip->saddr, 4);
		__builtin_memcpy(dst, &ip->daddr, 4);
		l4proto = ip->protocol;
		pkt->proto = l4proto;
		ip_len = bpf_ntohs(ip->tot_len);
		if (ip->frag_off & bpf_htons(IP_FRAGMENT_MASK)) {
			count_error(AB_ERR_FRAGMENT);
			return 0; /* counted as a port-less flow of its protocol */
		}
		cursor = (void *)ip + ip->ihl * 4; /* options skipped */
	} else if (eth_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cursor;

		if ((void *)(ip6 + 1) > data_end) {
			count_error(AB_ERR_TRUNCATED);
			return -1;
		}
		pkt->family = AB_FAMILY_V6;
		pkt->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
		__builtin_memcpy(src, &ip6->saddr, 16);
		__builtin_memcpy(dst, &ip6->daddr, 16);
		l4proto = ip6->nexthdr;
		if (ip6->payload_len)
			ip_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
		cursor = ip6 + 1;

#pragma unroll
		for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
			if (l4proto == IPPROTO_HOPOPTS || l4proto == IPPROTO_ROUTING ||
			    l4proto == IPPROTO_DSTOPTS || l4proto == IPPROTO_AH) {
				__u8 *ext = cursor;

				if (cursor + 2 > data_end) {
					count_error(AB_ERR_TRUNCATED);
					pkt->proto = l4proto;
					return 0;
				}
				/* AH counts its length in 4-byte words minus 2; the others in
				 * 8-byte words minus 1. */
				if (l4proto == IPPROTO_AH)
					cursor += (ext[1] + 2) * 4;
				else
					cursor += (ext[1] + 1) * 8;
				l4proto = ext[0];
			} else if (l4proto == IPPROTO_FRAGMENT) {
				count_error(AB_ERR_FRAGMENT);
				pkt->proto = l4proto;
				return 0;
			} else {
				break;
			}
		}
		pkt->proto = l4proto;
	} else {
		count_error(AB_ERR_NOT_IP);
		return -1;
	}
	pkt->l4_off = cursor - data;
	/* What the frame carried: skb->len, or more when the IP header says so (a
	 * capture truncated to fit BPF_PROG_TEST_RUN; online the two agree). */
	pkt->frame_len = skb->len;
	if (ip_len && pkt->l3_off + ip_len > skb->len)
		pkt->frame_len = pkt->l3_off + ip_len;

	if (l4proto == IPPROTO_TCP) {
		struct tcphdr *tcp = cursor;
		__u32 hlen;

		if ((void *)(tcp + 1) > data_end) {
			count_error(AB_ERR_TRUNCATED);
			return 0; /* addresses are known: count without ports */
		}
		pkt->has_ports = 1;
		pkt->sport = bpf_ntohs(tcp->source);
		pkt->dport = bpf_ntohs(tcp->dest);
		pkt->seq = bpf_ntohl(tcp->seq);
		/* The flags byte follows the 4-bit data offset and reserved bits. */
		pkt->tcp_flags = ((__u8 *)tcp)[13];
		hlen = tcp->doff * 4;
		if (hlen < sizeof(*tcp)) {
			count_error(AB_ERR_MALFORMED);
			return 0;
		}
		pkt->opt_len = hlen - sizeof(*tcp);
		pkt->payload_off = pkt->l4_off + hlen;
		/* The usual option area of an established Linux flow is exactly NOP NOP
		 * TIMESTAMP: read it in place (no copy, no helper call). */
		if (hlen == sizeof(*tcp) + 12 && (void *)tcp + sizeof(*tcp) + 12 <= data_end) {
			__u32 *ts = (void *)tcp + sizeof(*tcp);

			if (ts[0] == bpf_htonl(NOP_NOP_TIMESTAMP)) {
				pkt->has_ts = 1;
				pkt->tsval = bpf_ntohl(ts[1]);
				pkt->tsecr = bpf_ntohl(ts[2]);
				pkt->opt_len = 0; /* nothing left for the option walk */
			}
		}
	} else if (l4proto == IPPROTO_UDP) {
		struct udphdr *udp = cursor;

		if ((void *)(udp + 1) > data_end) {
			count_error(AB_ERR_TRUNCATED);
			return 0;
		}
		pkt->has_ports = 1;
		pkt->sport = bpf_ntohs(udp->source);
		pkt->dport = bpf_ntohs(udp->dest);
		pkt->payload_off = pkt->l4_off + sizeof(*udp);
	} else {
		return 0;
	}

	/* Payload: by the IP length (Ethernet pads short frames), by skb->len when
	 * the IP header has no length (big TCP). */
	if (ip_len) {
		__u32 end_l3 = pkt->l3_off + ip_len;

		pkt->payload_len = end_l3 > pkt->payload_off ? end_l3 - pkt->payload_off : 0;
	} else {
		pkt->payload_len = skb->len > pkt->payload_off ? skb->len - pkt->payload_off : 0;
	}
	return 0;
}

static __always_inline __u32 read_be32(__u8 *opts, __u32 o)
{
	return ((__u32)opts[o & (OPT_BUF - 1)] << 24) | ((__u32)opts[(o + 1) & (OPT_BUF - 1)] << 16) |
	       ((__u32)opts[(o + 2) & (OPT_BUF - 1)] << 8) | (__u32)opts[(o + 3) & (OPT_BUF - 1)];
}

/*
 * TCP options: find timestamps and up to MAX_MPTCP_OPTIONS MPTCP options.  The
 * walk is unrolled and keeps its cursor and results in the per-CPU packet
 * (memory, reloaded after a compiler barrier), so every path through one step
 * leaves the same register state and the verifier prunes them instead of
 * exploring each combination of option kinds.
 */
static __always_inline void parse_tcp_options(struct __sk_buff *skb, struct packet *pkt)
{
	__u32 zero = 0;
	struct tcp_options *o = scratch_options.lookup(&zero);
	__u32 len = pkt->opt_len;
	__u8 *opts;

	if (len == 0 || !o)
		return;
	/* The option bytes are only read below the copied length: no need to clear them. */
	__builtin_memset(o, 0, offsetof(struct tcp_options, bytes));
	opts = o->bytes;
	if (len > AB_TCP_OPTIONS_MAX)
		len = AB_TCP_OPTIONS_MAX;
	if (bpf_skb_load_bytes(skb, pkt->l4_off + sizeof(struct tcphdr), opts,
			       ((len - 1) & (OPT_BUF - 1)) + 1) < 0) {
		count_error(AB_ERR_TRUNCATED);
		return;
	}
#pragma unroll
	for (int step = 0; step < MAX_OPTION_STEPS; step++) {
		__u32 i = o->cursor;
		__u8 kind, olen;

		if (i >= len)
			break;
		kind = opts[i & (OPT_BUF - 1)];
		if (kind == TCPOPT_EOL)
			break;
		if (kind == TCPOPT_NOP) {
			olen = 1;
		} else {
			if (i + 1 >= len) {
				count_error(AB_ERR_MALFORMED);
				break;
			}
			olen = opts[(i + 1) & (OPT_BUF - 1)];
			if (olen < 2 || i + olen > len) {
				count_error(AB_ERR_MALFORMED);
				break;
			}
			if (kind == TCPOPT_TIMESTAMP && olen == 10) {
				o->ts_off = i + 2;
			} else if (kind == TCPOPT_MPTCP && olen >= 3) {
				__u8 count = o->mptcp_count;

				if (count < MAX_MPTCP_OPTIONS) {
					o->mptcp_off[count & 1] = i;
					o->mptcp_count = count + 1;
				}
			}
		}
		o->cursor = i + olen;
		asm volatile("" ::: "memory");
	}
	pkt->mptcp_count = o->mptcp_count;
	if (o->ts_off) {
		pkt->has_ts = 1;
		pkt->tsval = read_be32(opts, o->ts_off);
		pkt->tsecr = read_be32(opts, o->ts_off + 4);
	}
}

/* Receiver token of an MP_JOIN on a SYN (without ACK), else 0. */
static __always_inline __u32 join_token(struct packet *pkt, struct tcp_options *o)
{
	__u8 *opts = o->bytes;

	for (int m = 0; m < MAX_MPTCP_OPTIONS; m++) {
		__u32 off;

		if (m >= o->mptcp_count)
			break;
		off = o->mptcp_off[m];
		if ((opts[(off + 2) & (OPT_BUF - 1)] >> 4) == AB_MPTCP_JOIN &&
		    opts[(off + 1) & (OPT_BUF - 1)] >= 12 &&
		    (pkt->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
			return read_be32(opts, off + 4);
	}
	return 0;
}

static __always_inline void fill_header(struct ab_event_header *h, __u8 type, __u8 dir, __u64 now,
					struct ab_flow_key *key)
{
	h->event_type = type;
	h->direction = dir;
	__builtin_memset(h->reserved, 0, sizeof(h->reserved));
	h->ts_ns = now;
	__builtin_memcpy(&h->key, key, sizeof(*key));
	h->reserved2 = 0;
}

static __always_inline void emit_flow_event(__u8 type, __u8 dir, __u64 now, struct ab_flow_key *key,
					    struct ab_flow *flow, __u8 end_reason)
{
	struct ab_event_flow *ev = events.ringbuf_reserve(sizeof(*ev));

	if (!ev) {
		count_error(AB_ERR_EVENT_LOST);
		return;
	}
	fill_header(&ev->header, type, dir, now, key);
	ev->class_id = flow->class_id;
	ev->class_reason = flow->class_reason;
	ev->end_reason = end_reason;
	__builtin_memset(ev->reserved, 0, sizeof(ev->reserved));
	events.ringbuf_submit(ev, 0);
}

static __always_inline void emit_payload(struct __sk_buff *skb, struct packet *pkt, __u8 dir, __u64 now,
					 struct ab_flow_key *key, __u8 dns_answer)
{
	struct ab_event_payload *ev = events.ringbuf_reserve(sizeof(*ev));
	__u32 captured = pkt->payload_len;

	if (!ev) {
		count_error(AB_ERR_EVENT_LOST);
		return;
	}
	fill_header(&ev->header, AB_EVENT_PAYLOAD, dir, now, key);
	ev->payload_len = pkt->payload_len;
	ev->dns_answer = dns_answer;
	ev->reserved = 0;
	if (captured > AB_SNIPPET_SIZE)
		captured = AB_SNIPPET_SIZE;
	/* The mask shows the verifier a length in [1, AB_SNIPPET_SIZE] (a power of two). */
	if (captured > 0 &&
	    bpf_skb_load_bytes(skb, pkt->payload_off, ev->payload,
			       ((captured - 1) & (AB_SNIPPET_SIZE - 1)) + 1) < 0)
		captured = 0;
	ev->captured = captured;
	events.ringbuf_submit(ev, 0);
}

/* One MPTCP option: note its subtype, learn the version, report what matters. */
static __always_inline void handle_mptcp_option(struct packet *pkt, __u8 *opts, __u32 off, __u8 dir,
						__u64 now, struct ab_flow_key *key, struct ab_flow *flow)
{
	__u8 olen = opts[(off + 1) & (OPT_BUF - 1)];
	__u8 subtype = opts[(off + 2) & (OPT_BUF - 1)] >> 4;
	struct ab_event_mptcp *ev;
	int report;

	if (subtype > AB_MPTCP_TCPRST)
		return;
	/* Stored only when new: the field shares its line with the key. */
	if (!(flow->mptcp_subtypes & ((__u16)1 << subtype)))
		flow->mptcp_subtypes |= (__u16)1 << subtype;
	if (subtype == AB_MPTCP_CAPABLE)
		flow->mptcp_version = opts[(off + 2) & (OPT_BUF - 1)] & 0x0f;

	report = (subtype == AB_MPTCP_CAPABLE && olen >= 12) ||
		 (subtype == AB_MPTCP_JOIN && (pkt->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) ||
		 subtype == AB_MPTCP_ADD_ADDR || subtype == AB_MPTCP_RM_ADDR ||
		 subtype == AB_MPTCP_FASTCLOSE || subtype == AB_MPTCP_TCPRST;
	if (!report)
		return;
	ev = events.ringbuf_reserve(sizeof(*ev));
	if (!ev) {
		count_error(AB_ERR_EVENT_LOST);
		return;
	}
	fill_header(&ev->header, AB_EVENT_MPTCP, dir, now, key);
	ev->subtype = subtype;
	ev->version = flow->mptcp_version;
	ev->option_len = olen > AB_TCP_OPTIONS_MAX ? AB_TCP_OPTIONS_MAX : olen;
	ev->tcp_flags = pkt->tcp_flags;
	__builtin_memset(ev->reserved, 0, sizeof(ev->reserved));
#pragma unroll
	for (int j = 0; j < AB_TCP_OPTIONS_MAX; j++)
		ev->option[j] = opts[(off + j) & (OPT_BUF - 1)];
	events.ringbuf_submit(ev, 0);
}

/* The best rule so far: its class (0: none yet), rank (see struct
 * ab_port_class) and AB_REASON_*. */
struct match {
	__u8  class_id;
	__u8  reason;
	__u16 rank;
};

static __always_inline void lookup_prefix(__u8 family, __u8 *addr, struct match *m)
{
	struct ab_class_rule *rule;
	__u32 zero = 0;
	struct prefix_keys *keys = scratch_prefix.lookup(&zero);

	if (!keys)
		return;
	if (family == AB_FAMILY_V4) {
		keys->v4.prefixlen = 32;
		__builtin_memcpy(keys->v4.addr, addr, 4);
		rule = prefixes_v4.lookup(&keys->v4);
	} else {
		keys->v6.prefixlen = 128;
		__builtin_memcpy(keys->v6.addr, addr, 16);
		rule = prefixes_v6.lookup(&keys->v6);
	}
	if (rule && rule->class_id) {
		m->class_id = rule->class_id;
		m->rank = rule->rank;
		m->reason = AB_REASON_PREFIX;
	}
}

/* The port's rule, where it ranks before the match so far (ties keep that one). */
static __always_inline void lookup_port(__u8 proto, __u32 port, struct match *m)
{
	struct ab_port_class *pc = port_classes.lookup(&port);
	__u8 found;
	__u16 rank;

	if (!pc)
		return;
	if (proto == IPPROTO_TCP) {
		found = pc->tcp;
		rank = pc->tcp_rank;
	} else if (proto == IPPROTO_UDP) {
		found = pc->udp;
		rank = pc->udp_rank;
	} else {
		found = pc->other;
		rank = pc->other_rank;
	}
	if (found && (!m->class_id || rank < m->rank)) {
		m->class_id = found;
		m->rank = rank;
		m->reason = AB_REASON_PORT;
	}
}

/*
 * The class of a flow: per-flow override, MPTCP token (a joined subflow
 * takes its connection's class), else of the prefix rule of the remote address
 * (prefix rules name remote ends; LAN-side rules are the controller's) and the
 * port rules of its two ports, the one of lowest rank, as the controller's
 * rule list takes its first match (on a tie: prefix, the responder's port,
 * the opener's), else the default class.
 */
static __always_inline void classify(struct ab_flow *flow, struct ab_flow_key *key,
				     struct ab_config *cfg)
{
	struct ab_class_rule *rule;
	struct match m = {};
	__u32 first, second;

	flow->policy_generation = cfg->policy_generation;
	rule = overrides.lookup(key);
	if (rule && rule->class_id) {
		flow->class_id = rule->class_id;
		flow->class_reason = AB_REASON_OVERRIDE;
		return;
	}
	if (flow->join_token) {
		__u32 token = flow->join_token;

		rule = tokens.lookup(&token);
		if (rule && rule->class_id) {
			flow->class_id = rule->class_id;
			flow->class_reason = AB_REASON_TOKEN;
			return;
		}
	}
	lookup_prefix(key->family, key->remote_addr, &m);
	if (flow->opened_by == AB_DIR_UP) {
		first = key->remote_port;
		second = key->lan_port;
	} else {
		first = key->lan_port;
		second = key->remote_port;
	}
	if (key->proto != IPPROTO_ICMP && key->proto != IPPROTO_ICMPV6) {
		lookup_port(key->proto, first, &m);
		lookup_port(key->proto, second, &m);
	}
	if (m.class_id) {
		flow->class_id = m.class_id;
		flow->class_reason = m.reason;
		return;
	}
	flow->class_id = cfg->default_class;
	flow->class_reason = AB_REASON_DEFAULT;
}

static __always_inline __u32 saturate32(__u64 value)
{
	return value > 0xffffffffULL ? 0xffffffff : (__u32)value;
}

/*
 * Passive RTT from TCP timestamps and retransmissions from sequence numbers.
 * Per packet this reads and writes only its own direction's line; the other
 * direction's line is written once per RTT sample (see struct ab_flow_dir).
 */
static __always_inline void track_tcp(struct __sk_buff *skb, struct ab_flow *flow, struct packet *pkt,
				      __u8 dir, __u64 segs)
{
	struct ab_flow_dir *mine = &flow->dir[dir & 1];
	struct ab_flow_dir *theirs = &flow->dir[(dir ^ 1) & 1];

	if (pkt->payload_len > 0) {
		__u32 end = pkt->seq + pkt->payload_len;

		if (mine->seq_valid && (__s32)(pkt->seq - mine->next_seq) < 0)
			mine->retransmits += segs;
		if (!mine->seq_valid || (__s32)(end - mine->next_seq) > 0) {
			mine->next_seq = end;
			mine->seq_valid = 1;
		}
	}
	if (!pkt->has_ts)
		return;
	/* Start a sample with a TSval the first time it passes: only a newer TSval
	 * than the last echoed one, so the time is that of its first packet, as
	 * pping does.  The watch for its echo goes to the other direction. */
	if (mine->ts_state == AB_TS_NONE ||
	    (mine->ts_state == AB_TS_DONE && (__s32)(pkt->tsval - mine->ts_sent) > 0)) {
		mine->ts_sent = pkt->tsval;
		mine->ts_state = AB_TS_WAITING;
		theirs->echo_tsval = pkt->tsval;
		theirs->echo_ns = clock_precise(skb);
		theirs->echo_armed = 1;
	}
	/* Close the other direction's sample when this packet echoes its TSval. */
	if (mine->echo_armed && (pkt->tcp_flags & TCP_ACK)) {
		if (pkt->tsecr == mine->echo_tsval) {
			__u32 sample = saturate32(clock_precise(skb) - mine->echo_ns);

			theirs->rtt_last_ns = sample;
			if (theirs->rtt_samples == 0 || sample < theirs->rtt_min_ns)
				theirs->rtt_min_ns = sample;
			if (theirs->rtt_samples == 0)
				theirs->rtt_srtt_ns = sample;
			else
				theirs->rtt_srtt_ns = theirs->rtt_srtt_ns - (theirs->rtt_srtt_ns >> 3) + (sample >> 3);
			theirs->rtt_samples += 1;
			theirs->ts_state = AB_TS_DONE;
			mine->echo_armed = 0;
		} else if ((__s32)(pkt->tsecr - mine->echo_tsval) > 0) {
			/* Its echo went by unseen: start afresh. */
			theirs->ts_state = AB_TS_DONE;
			mine->echo_armed = 0;
		}
	}
}

/* DSCP rewrite, ECN bits kept; IPv4 checksum fixed incrementally. */
static __always_inline void set_dscp(struct __sk_buff *skb, struct packet *pkt, __u8 dscp)
{
	__u8 tos = (dscp << 2) | (pkt->tos & 0x03);

	if (tos == pkt->tos)
		return;
	if (pkt->family == AB_FAMILY_V4) {
		__u32 off = pkt->l3_off;

		if (bpf_l3_csum_replace(skb, off + offsetof(struct iphdr, check), bpf_htons(pkt->tos),
					bpf_htons(tos), 2) < 0 ||
		    bpf_skb_store_bytes(skb, off + offsetof(struct iphdr, tos), &tos, 1, 0) < 0)
			count_error(AB_ERR_MARK);
	} else {
		__u16 word;

		if (bpf_skb_load_bytes(skb, pkt->l3_off, &word, 2) < 0) {
			count_error(AB_ERR_MARK);
			return;
		}
		/* version(4) | traffic class(8) | flow label(20): the class straddles bytes. */
		word = bpf_htons((bpf_ntohs(word) & 0xf00f) | ((__u16)tos << 4));
		if (bpf_skb_store_bytes(skb, pkt->l3_off, &word, 2, 0) < 0)
			count_error(AB_ERR_MARK);
	}
}

static __always_inline void mark(struct __sk_buff *skb, struct packet *pkt, __u8 class_id, __u8 egress)
{
	__u32 index = class_id;
	struct ab_class *cls = classes.lookup(&index);

	if (!cls)
		return;
	/* Only at egress: forwarding resets skb->priority after ingress. */
	if (egress && (cls->flags & AB_CLASS_SET_PRIO))
		skb->priority = cls->priority;
	if (cls->flags & AB_CLASS_SET_DSCP)
		set_dscp(skb, pkt, cls->dscp & 0x3f);
}

static __always_inline struct ab_port *port_of(__u32 ifindex)
{
	struct ab_port *port;

	if (ifindex < AB_PORT_INDEX_SIZE) {
		port = port_index.lookup(&ifindex);
		return port && port->role ? port : NULL;
	}
	return ports.lookup(&ifindex);
}

/*
 * LAN egress (the egress hook carries download here) with marking on: the flow
 * is unknown (its key needs the WAN port the packet came in by), but the DSCP
 * written at WAN ingress says the class.  Only the IP header's first bytes are
 * read, in place.
 */
static __always_inline void steer_lan_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u16 eth_proto;
	__u8 *ip = skip_l2(data, data_end, &eth_proto);
	__u32 dscp, *priority;

	if (!ip)
		return;
	if (eth_proto == bpf_htons(ETH_P_IP)) {
		if ((void *)(ip + 2) > data_end) {
			count_error(AB_ERR_TRUNCATED);
			return;
		}
		dscp = ip[1] >> 2;
	} else if (eth_proto == bpf_htons(ETH_P_IPV6)) {
		if ((void *)(ip + 2) > data_end) {
			count_error(AB_ERR_TRUNCATED);
			return;
		}
		/* version(4) | traffic class(8): the DSCP is the class's top 6 bits. */
		dscp = ((ip[0] & 0x0f) << 2) | (ip[1] >> 6);
	} else {
		count_error(AB_ERR_NOT_IP);
		return;
	}
	priority = dscp_priority.lookup(&dscp);
	if (priority && *priority)
		skb->priority = *priority;
}

/* The flow table (struct ab_flow_slot). */

#define KEY_WORDS (sizeof(struct ab_flow_key) / 4)
#define HASH_MULTIPLIER 0xff51afd7ed558ccdULL

/* The key's hash: kstructs.set_bases() computes it, and the two sets it picks,
 * in numpy: change them together. */
static __always_inline __u64 key_hash(struct ab_flow_key *key)
{
	__u32 *word = (__u32 *)key;
	__u64 hash = AB_FLOW_SEED;

#pragma unroll
	for (int i = 0; i < KEY_WORDS; i++)
		hash = (hash ^ word[i]) * HASH_MULTIPLIER;
	/* Fold the high bits down and mix again: every bit of the key moves both
	 * halves, which pick the two sets. */
	hash ^= hash >> 32;
	hash *= HASH_MULTIPLIER;
	return hash ^ (hash >> 29);
}

/* First slot of the set that 32 bits of the hash pick (scaled to the number of
 * sets: no division). */
static __always_inline __u32 set_base(__u32 half)
{
	return (__u32)(((__u64)half * (AB_FLOW_MAP_SIZE / AB_FLOW_WAYS)) >> 32) * AB_FLOW_WAYS;
}

static __always_inline int same_key(struct ab_flow_key *a, struct ab_flow_key *b)
{
	__u32 *x = (__u32 *)a, *y = (__u32 *)b;
	__u32 differ = 0;

#pragma unroll
	for (int i = 0; i < KEY_WORDS; i++)
		differ |= x[i] ^ y[i];
	return differ == 0;
}

/* Atomically move a slot from state `from` to `to`; false if it was not in `from`. */
static __always_inline int set_state(struct ab_flow_slot *slot, __u32 from, __u32 to)
{
	union {
		__u64 word;
		struct {
			__u32 key_tail;
			__u32 state;
		};
	} seen, want;

	seen.word = *(volatile __u64 *)&slot->words[5];
	if (seen.state != from)
		return 0;
	want.word = seen.word;
	want.state = to;
	return __sync_val_compare_and_swap(&slot->words[5], seen.word, want.word) == seen.word;
}

/* Slot `at` of the table, looked up through the caller's one `index` (the
 * lookups' keys would each take a stack slot of their own, and the stack is
 * full), or NULL past the end. */
static __always_inline struct ab_flow_slot *slot_at(__u32 at, __u32 *index)
{
	*index = at;
	return flows.lookup(index);
}

/* A slot's state as it is now (another CPU may be changing it). */
static __always_inline __u32 slot_state(struct ab_flow_slot *slot)
{
	return *(volatile __u32 *)&slot->state;
}

/* The slot of the set starting at `base` that holds the key live (or, with
 * `claimed_too`, being claimed: zeroed and keyed), or NULL. */
static __always_inline struct ab_flow_slot *scan_set(__u32 base, struct ab_flow_key *key, __u32 *index,
						     int claimed_too)
{
#pragma unroll
	for (int way = 0; way < AB_FLOW_WAYS; way++) {
		struct ab_flow_slot *slot = slot_at(base + way, index);
		__u32 state;

		if (!slot)
			continue;
		state = slot_state(slot);
		if ((state == AB_SLOT_LIVE || (claimed_too && state == AB_SLOT_CLAIMED)) &&
		    same_key(&slot->key, key))
			return slot;
	}
	return NULL;
}

/*
 * Which live flow a new one replaces when its sets are full, lowest first: any
 * flow never answered (only its opener has sent: a scan, a flood, a SYN with
 * no reply) before any answered one, as conntrack's early drop does, then the
 * one idle longest.  A flood of new flows then replaces its own entries, not
 * the established flows it would otherwise outlast.  The answer's packets are
 * on another line of the slot; this runs only when both sets are full.
 */
static __always_inline __u64 eviction_rank(struct ab_flow_slot *slot)
{
	__u8 reply = (slot->flow.opened_by ^ 1) & 1;

	return (slot->flow.dir[reply].packets ? 1ULL << 63 : 0) | slot->flow.last_seen_ns;
}

/* Where a new flow would go in the set starting at `base`: its first empty
 * slot, else its live slot of the lowest eviction_rank (~0 when every slot is
 * being claimed), in the low 32 bits, and how many slots are empty in the high 32. */
static __always_inline __u64 set_victim(__u32 base, __u32 *index)
{
	__u32 victim = ~0U, empty = 0;
	__u64 lowest = ~0ULL, rank;

#pragma unroll
	for (int way = 0; way < AB_FLOW_WAYS; way++) {
		struct ab_flow_slot *slot = slot_at(base + way, index);
		__u32 state;

		if (!slot)
			continue;
		state = slot_state(slot);
		if (state == AB_SLOT_EMPTY) {
			if (!empty)
				victim = base + way;
			empty++;
		} else if (state == AB_SLOT_LIVE && !empty && (rank = eviction_rank(slot)) < lowest) {
			victim = base + way;
			lowest = rank;
		}
	}
	return ((__u64)empty << 32) | victim;
}

/*
 * The slot of the key's flow, or NULL with *claimed set to the slot this CPU
 * has just claimed for it, zeroed and its key written (NULL when it could not
 * take one: the packet passes uncounted, an AB_ERR_FLOW_INSERT).
 *
 * A flow may live in either of two sets (two hashes of its key): it is looked
 * for in the first, then the second, and a new flow takes an empty slot of the
 * set with more of them, else replaces the flow of the two sets that ranks
 * lowest (eviction_rank: never answered, then idle longest).
 * Two choices keep the sets level: at three quarters full, under 1 % of new
 * flows find both sets full (one set per key: 4.5 %).  A flow in the first way
 * of its first set, the usual case, costs one line to find.
 */
static __always_inline struct ab_flow_slot *find_slot(struct ab_flow_key *key,
						      struct ab_flow_slot **claimed)
{
	struct ab_flow_slot *found, *victim;
	__u64 hash = key_hash(key);
	__u32 first = set_base(hash >> 32), second = set_base((__u32)hash);
	__u64 mine, other, *lock;
	__u32 index, state;

	*claimed = NULL;
	found = scan_set(first, key, &index, 0);
	if (!found)
		found = scan_set(second, key, &index, 0);
	if (found)
		return found;
	/*
	 * A new flow (the cold path).  Two CPUs may meet it at once: the lock of
	 * its first set lets one take a slot for it at a time, and the other then
	 * finds that slot (zeroed and keyed before the lock is let go) and counts
	 * in it.  A CPU that finds the lock held passes its packet uncounted.
	 */
	index = first / AB_FLOW_WAYS;
	lock = flow_locks.lookup(&index);
	if (!lock || __sync_val_compare_and_swap(lock, 0, 1) != 0)
		return NULL;
	found = scan_set(first, key, &index, 1);
	if (!found)
		found = scan_set(second, key, &index, 1);
	if (found) {
		__sync_val_compare_and_swap(lock, 1, 0);
		return found;
	}
	/* An empty slot of the set with more of them (the first when even), else
	 * the lower ranked of the two sets' victims. */
	mine = set_victim(first, &index);
	other = set_victim(second, &index);
	victim = slot_at((__u32)mine, &index);
	if ((other >> 32) > (mine >> 32) || !victim) {
		victim = slot_at((__u32)other, &index);
	} else if ((mine >> 32) == 0 && (other >> 32) == 0) {
		struct ab_flow_slot *second_victim = slot_at((__u32)other, &index);

		if (second_victim && eviction_rank(second_victim) < eviction_rank(victim))
			victim = second_victim;
	}
	/* A slot of the second set may be claimed under another set's lock: the
	 * compare-and-swap settles it, and the loser passes its packet uncounted. */
	if (victim) {
		state = slot_state(victim);
		if (state == AB_SLOT_CLAIMED || !set_state(victim, state, AB_SLOT_CLAIMED))
			victim = NULL;
	}
	if (victim) {
		__builtin_memset(&victim->flow, 0, sizeof(victim->flow));
		__u32 *from = (__u32 *)key, *to = (__u32 *)&victim->key;
#pragma unroll
		for (int i = 0; i < KEY_WORDS; i++)
			to[i] = from[i];
	}
	/* A full barrier: the zeroed value and the key are visible before the lock is free. */
	__sync_val_compare_and_swap(lock, 1, 0);
	*claimed = victim;
	return NULL;
}

/* A packet crossing a WAN port: count it in its flow, and mark it when `marking`. */
static __always_inline int handle_wan(struct __sk_buff *skb, __u8 dir_if_wan, __u8 marking)
{
	__u32 ifindex = skb->ifindex;
	__u32 zero = 0;
	struct ab_config *cfg;
	struct packet packet = {};
	struct packet *pkt = &packet;
	struct ab_flow_key key = {};
	struct ab_flow_slot *slot, *fresh;
	struct ab_flow *flow;
	struct ab_flow_dir *mine;
	struct tcp_options *options;
	__u8 flags_before;
	__u64 now, segs;

	cfg = config.lookup(&zero);
	if (!cfg)
		return TC_ACT_OK;
	if (parse(skb, pkt, &key, dir_if_wan) < 0)
		return TC_ACT_OK;
	if (pkt->proto == IPPROTO_TCP && pkt->opt_len)
		parse_tcp_options(skb, pkt);

	key.ifindex = ifindex;
	key.family = pkt->family;
	key.proto = pkt->proto;
	if (dir_if_wan == AB_DIR_UP) {
		key.lan_port = pkt->sport;
		key.remote_port = pkt->dport;
	} else {
		key.lan_port = pkt->dport;
		key.remote_port = pkt->sport;
	}

	now = clock_coarse(skb, cfg);
	slot = find_slot(&key, &fresh);
	if (slot) {
		flow = &slot->flow;
	} else if (fresh) {
		flow = &fresh->flow; /* zeroed by find_slot */
		flow->first_seen_ns = now;
		flow->last_seen_ns = now;
		flow->opened_by = dir_if_wan;
		flow->mptcp_version = AB_MPTCP_VERSION_NONE;
		options = pkt->mptcp_count ? scratch_options.lookup(&zero) : NULL;
		if (options)
			flow->join_token = join_token(pkt, options);
	} else {
		count_error(AB_ERR_FLOW_INSERT);
		return TC_ACT_OK;
	}
	if (fresh || flow->policy_generation != cfg->policy_generation)
		classify(flow, &key, cfg);
	if (fresh) {
		/* Live only now, its key and value written (a full barrier); nobody
		 * else moves a claimed slot. */
		set_state(fresh, AB_SLOT_CLAIMED, AB_SLOT_LIVE);
		emit_flow_event(AB_EVENT_NEW_FLOW, dir_if_wan, now, &key, flow, 0);
	}

	segs = skb->gso_segs;
	if (segs == 0)
		segs = 1;
	mine = &flow->dir[dir_if_wan & 1];
	__sync_fetch_and_add(&mine->packets, segs);
	__sync_fetch_and_add(&mine->bytes, (__u64)(pkt->frame_len ? pkt->frame_len : skb->len));
	/* Stores only when something changed: last_seen shares its line with the
	 * key, which every lookup on either CPU reads. */
	flags_before = mine->tcp_flags;
	if ((flags_before | pkt->tcp_flags) != flags_before)
		mine->tcp_flags = flags_before | pkt->tcp_flags;
	if (flow->last_seen_ns != now)
		flow->last_seen_ns = now;

	if (pkt->proto == IPPROTO_TCP && pkt->has_ports) {
		track_tcp(skb, flow, pkt, dir_if_wan, segs);
		options = pkt->mptcp_count ? scratch_options.lookup(&zero) : NULL;
		for (int m = 0; m < MAX_MPTCP_OPTIONS && options; m++) {
			if (m >= options->mptcp_count)
				break;
			handle_mptcp_option(pkt, options->bytes, options->mptcp_off[m], dir_if_wan, now, &key,
					    flow);
		}
		/* The first FIN or RST either way ends the flow (the other line is
		 * read only then). */
		if ((pkt->tcp_flags & (TCP_FIN | TCP_RST)) &&
		    !((flags_before | flow->dir[(dir_if_wan ^ 1) & 1].tcp_flags) & (TCP_FIN | TCP_RST)))
			emit_flow_event(AB_EVENT_FLOW_END, dir_if_wan, now, &key, flow,
					(pkt->tcp_flags & TCP_RST) ? AB_END_RST : AB_END_FIN);
	}

	if (pkt->has_ports && pkt->payload_len > 0) {
		__u8 dns_answer = pkt->proto == IPPROTO_UDP && pkt->sport == DNS_PORT;

		if (dns_answer || mine->snippets < AB_SNIPPETS_PER_DIR) {
			if (mine->snippets < 0xff)
				mine->snippets += 1;
			emit_payload(skb, pkt, dir_if_wan, now, &key, dns_answer);
		}
	}

	if (marking)
		mark(skb, pkt, flow->class_id, dir_if_wan == AB_DIR_UP);
	return TC_ACT_OK;
}

/* Any port: its role and flags from the ports maps. */
static __always_inline int handle(struct __sk_buff *skb, __u8 dir_if_wan)
{
	struct ab_port *port = port_of(skb->ifindex);

	if (!port)
		return TC_ACT_OK;
	if (port->role == AB_ROLE_LAN) {
		if (dir_if_wan == AB_DIR_UP && (port->flags & AB_PORT_MARK))
			steer_lan_egress(skb);
		return TC_ACT_OK;
	}
	if (port->role != AB_ROLE_WAN || !(port->flags & (AB_PORT_COUNT | AB_PORT_MARK)))
		return TC_ACT_OK;
	return handle_wan(skb, dir_if_wan, port->flags & AB_PORT_MARK);
}

/*
 * Entry points.  At a WAN port, egress carries upload and ingress carries
 * download.
 *
 * The daemon knows each port's role and flags when it attaches, so it attaches
 * the entry points made for them, which never look the port up (a cold line
 * per packet under forwarding load): ab_wan_* (count and mark), ab_wan_*_count
 * (count only), ab_lan_egress (steer by the DSCP written at WAN ingress) and
 * ab_pass where there is nothing to do.  A flow's key needs the WAN port it
 * crosses, so upload is counted and marked at WAN egress and a LAN port's
 * ingress runs ab_pass.
 *
 * ab_egress and ab_ingress serve any port from the ports maps: the offline
 * analyzer runs them, and a port whose own copy fails to load shares them.
 */
int ab_egress(struct __sk_buff *skb)
{
	return handle(skb, AB_DIR_UP);
}

int ab_ingress(struct __sk_buff *skb)
{
	return handle(skb, AB_DIR_DOWN);
}

int ab_wan_egress(struct __sk_buff *skb)
{
	return handle_wan(skb, AB_DIR_UP, 1);
}

int ab_wan_ingress(struct __sk_buff *skb)
{
	return handle_wan(skb, AB_DIR_DOWN, 1);
}

int ab_wan_egress_count(struct __sk_buff *skb)
{
	return handle_wan(skb, AB_DIR_UP, 0);
}

int ab_wan_ingress_count(struct __sk_buff *skb)
{
	return handle_wan(skb, AB_DIR_DOWN, 0);
}

int ab_lan_egress(struct __sk_buff *skb)
{
	steer_lan_egress(skb);
	return TC_ACT_OK;
}

int ab_pass(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

/* Not attached: user space runs it with BPF_PROG_TEST_RUN to sample jiffies
 * and CLOCK_MONOTONIC together, which calibrates clock_coarse. */
int ab_clock_probe(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct ab_clock_sample *sample = clock_probe.lookup(&zero);

	if (sample) {
		sample->jiffies = bpf_jiffies64();
		sample->monotonic_ns = bpf_ktime_get_ns();
	}
	return TC_ACT_OK;
}
