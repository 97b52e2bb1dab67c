// SPDX-License-Identifier: GPL-2.0
/*
 * datapath.bpf.c: Anabranch's kernel half, a tc clsact program on every gateway
 * port.  It parses each packet (Ethernet, up to two VLAN tags, IPv4, IPv6 with
 * its usual extension headers, TCP/UDP/ICMP) and counts it into the flow of the
 * WAN port it crosses.  It never drops or delays a packet: every path returns
 * TC_ACT_OK, and what it cannot parse it counts as an error and passes.
 *
 * Compiled at start-up by BCC (daemon/datapath.py) with -I pointing at this
 * folder and -D for the knobs in datapath.h.  Uses only UAPI headers, so the
 * distribution's generic kernel headers suffice.
 *
 * Cost: one hash lookup (plus an insert for a new flow) and a few atomic adds
 * per packet on counted ports; nothing on ports without AB_PORT_COUNT.
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

BPF_TABLE("lru_hash", struct ab_flow_key, struct ab_flow, flows, AB_FLOW_MAP_SIZE);
BPF_HASH(ports, __u32, struct ab_port, AB_PORT_MAP_SIZE);
BPF_PERCPU_ARRAY(errors, __u64, AB_ERR_MAX);

#define VLAN_HLEN 4
#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT_HEADERS 4
#define IP_FRAGMENT_MASK 0x3fff /* MF flag and fragment offset */

struct packet {
	__u8  family;
	__u8  proto;
	__u8  tcp_flags;
	__u8  reserved;
	__u16 sport;
	__u16 dport;
	__u8  saddr[16];
	__u8  daddr[16];
};

static __always_inline void count_error(__u32 index)
{
	__u64 *counter = errors.lookup(&index);

	if (counter)
		*counter += 1; /* per-CPU slot: no atomic needed */
}

/* Parse L3/L4 into *pkt; returns 0 when the packet belongs to a flow. */
static __always_inline int parse(struct __sk_buff *skb, struct packet *pkt)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	void *cursor;
	__u16 eth_proto;
	__u8 l4proto;

	if ((void *)(eth + 1) > data_end) {
		count_error(AB_ERR_TRUNCATED);
		return -1;
	}
	eth_proto = eth->h_proto;
	cursor = eth + 1;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (eth_proto != bpf_htons(ETH_P_8021Q) && eth_proto != bpf_htons(ETH_P_8021AD))
			break;
		if (cursor + VLAN_HLEN > data_end) {
			count_error(AB_ERR_TRUNCATED);
			return -1;
		}
		/* TCI (2 bytes) then the encapsulated protocol (2 bytes). */
		eth_proto = *(__u16 *)(cursor + 2);
		cursor += VLAN_HLEN;
	}

	if (eth_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cursor;

		if ((void *)(ip + 1) > data_end) {
			count_error(AB_ERR_TRUNCATED);
			return -1;
		}
		if (ip->ihl < 5) {
			count_error(AB_ERR_TRUNCATED);
			return -1;
		}
		pkt->family = AB_FAMILY_V4;
		__builtin_memcpy(pkt->saddr, &ip->saddr, 4);
		__builtin_memcpy(pkt->daddr, &ip->daddr, 4);
		l4proto = ip->protocol;
		pkt->proto = l4proto;
		if (ip->frag_off & bpf_htons(IP_FRAGMENT_MASK)) {
			count_error(AB_ERR_FRAGMENT);
			return 0; /* counted as a port-less flow of its protocol */
		}
		cursor = (void *)ip + ip->ihl * 4;
	} else if (eth_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cursor;

		if ((void *)(ip6 + 1) > data_end) {
			count_error(AB_ERR_TRUNCATED);
			return -1;
		}
		pkt->family = AB_FAMILY_V6;
		__builtin_memcpy(pkt->saddr, &ip6->saddr, 16);
		__builtin_memcpy(pkt->daddr, &ip6->daddr, 16);
		l4proto = ip6->nexthdr;
		cursor = ip6 + 1;

#pragma unroll
		for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
			if (l4proto == IPPROTO_HOPOPTS || l4proto == IPPROTO_ROUTING ||
			    l4proto == IPPROTO_DSTOPTS) {
				__u8 *ext = cursor;

				if (cursor + 2 > data_end) {
					count_error(AB_ERR_TRUNCATED);
					return -1;
				}
				l4proto = ext[0];
				cursor += (ext[1] + 1) * 8;
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

	if (l4proto == IPPROTO_TCP) {
		struct tcphdr *tcp = cursor;

		if ((void *)(tcp + 1) > data_end) {
			count_error(AB_ERR_TRUNCATED);
			return 0; /* addresses are known: count without ports */
		}
		pkt->sport = bpf_ntohs(tcp->source);
		pkt->dport = bpf_ntohs(tcp->dest);
		/* The flags byte follows the 4-bit data offset and reserved bits. */
		pkt->tcp_flags = ((__u8 *)tcp)[13];
	} else if (l4proto == IPPROTO_UDP) {
		struct udphdr *udp = cursor;

		if ((void *)(udp + 1) > data_end) {
			count_error(AB_ERR_TRUNCATED);
			return 0;
		}
		pkt->sport = bpf_ntohs(udp->source);
		pkt->dport = bpf_ntohs(udp->dest);
	}
	return 0;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir_if_wan)
{
	__u32 ifindex = skb->ifindex;
	struct ab_port *port = ports.lookup(&ifindex);
	struct packet pkt = {};
	struct ab_flow_key key = {};
	struct ab_flow *flow;
	__u64 now, segs;

	if (!port || !(port->flags & AB_PORT_COUNT) || port->role != AB_ROLE_WAN)
		return TC_ACT_OK;
	if (parse(skb, &pkt) < 0)
		return TC_ACT_OK;

	key.ifindex = ifindex;
	key.family = pkt.family;
	key.proto = pkt.proto;
	if (dir_if_wan == AB_DIR_UP) {
		key.lan_port = pkt.sport;
		key.remote_port = pkt.dport;
		__builtin_memcpy(key.lan_addr, pkt.saddr, 16);
		__builtin_memcpy(key.remote_addr, pkt.daddr, 16);
	} else {
		key.lan_port = pkt.dport;
		key.remote_port = pkt.sport;
		__builtin_memcpy(key.lan_addr, pkt.daddr, 16);
		__builtin_memcpy(key.remote_addr, pkt.saddr, 16);
	}

	now = bpf_ktime_get_ns();
	flow = flows.lookup(&key);
	if (!flow) {
		struct ab_flow fresh = {};

		fresh.first_seen_ns = now;
		fresh.last_seen_ns = now;
		fresh.opened_by = dir_if_wan;
		/* BPF_NOEXIST: if another CPU inserted it first, keep theirs. */
		flows.insert(&key, &fresh);
		flow = flows.lookup(&key);
		if (!flow) {
			count_error(AB_ERR_FLOW_INSERT);
			return TC_ACT_OK;
		}
	}

	segs = skb->gso_segs;
	if (segs == 0)
		segs = 1;
	if (dir_if_wan == AB_DIR_UP) {
		__sync_fetch_and_add(&flow->dir[AB_DIR_UP].packets, segs);
		__sync_fetch_and_add(&flow->dir[AB_DIR_UP].bytes, (__u64)skb->len);
		flow->tcp_flags[AB_DIR_UP] |= pkt.tcp_flags;
	} else {
		__sync_fetch_and_add(&flow->dir[AB_DIR_DOWN].packets, segs);
		__sync_fetch_and_add(&flow->dir[AB_DIR_DOWN].bytes, (__u64)skb->len);
		flow->tcp_flags[AB_DIR_DOWN] |= pkt.tcp_flags;
	}
	flow->last_seen_ns = now;
	return TC_ACT_OK;
}

/* At a WAN port, egress carries upload and ingress carries download. */
int ab_egress(struct __sk_buff *skb)
{
	return handle(skb, AB_DIR_UP);
}

int ab_ingress(struct __sk_buff *skb)
{
	return handle(skb, AB_DIR_DOWN);
}
