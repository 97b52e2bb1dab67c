// SPDX-License-Identifier: GPL-2.0
/*
 * noop.bpf.c: the cheapest tc program, for bench_datapath.py only.  Its run time
 * in the kernel's BPF statistics is the floor under any program on the same
 * hooks (the statistics' own clock reads, the cold cache lines of the call), so
 * the datapath's figure can be read against it.
 */
#include <linux/pkt_cls.h>

int ab_noop(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
