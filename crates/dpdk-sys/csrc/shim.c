#include <string.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_memcpy.h>
#include "shim.h"

uint16_t brick_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t brick_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

int brick_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **pkts, unsigned int n)
{
	return rte_pktmbuf_alloc_bulk(mp, pkts, n);
}

void brick_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

void brick_pktmbuf_free_bulk(struct rte_mbuf **pkts, unsigned int n)
{
	rte_pktmbuf_free_bulk(pkts, n);
}

void *brick_mbuf_data(struct rte_mbuf *m)
{
	return rte_pktmbuf_mtod(m, void *);
}

uint16_t brick_mbuf_data_len(const struct rte_mbuf *m)
{
	return m->data_len;
}

uint32_t brick_mbuf_pkt_len(const struct rte_mbuf *m)
{
	return m->pkt_len;
}

uint64_t brick_mbuf_ol_flags(const struct rte_mbuf *m)
{
	return m->ol_flags;
}

struct rte_mbuf *brick_mbuf_next(const struct rte_mbuf *m)
{
	return m->next;
}

int brick_mbuf_fill(struct rte_mbuf *m, const void *data, uint16_t len)
{
	char *dst = rte_pktmbuf_append(m, len);
	if (dst == NULL)
		return -1;
	memcpy(dst, data, len);
	return 0;
}

unsigned int brick_lcore_id(void)
{
	return rte_lcore_id();
}

int brick_rte_errno(void)
{
	return rte_errno;
}

static void fill_view(struct rte_mbuf *m, struct brick_mbuf_view *v)
{
	v->data = rte_pktmbuf_mtod(m, void *);
	v->next = m->next;
	v->ol_flags = m->ol_flags;
	v->pkt_len = m->pkt_len;
	v->data_len = m->data_len;
	v->nb_segs = m->nb_segs;
	v->buf = m->buf_addr;
	v->buf_len = m->buf_len;
	v->data_off = m->data_off;
	v->exclusive = m->nb_segs == 1 && RTE_MBUF_DIRECT(m) && !RTE_MBUF_HAS_EXTBUF(m) &&
		       rte_mbuf_refcnt_read(m) == 1;
}

uint16_t brick_rx_burst_views(uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
			      struct brick_mbuf_view *views, uint16_t n)
{
	uint16_t got = rte_eth_rx_burst(port, queue, pkts, n);
	for (uint16_t i = 0; i < got; i++)
		fill_view(pkts[i], &views[i]);
	return got;
}

int brick_pktmbuf_alloc_views(struct rte_mempool *mp, struct rte_mbuf **pkts,
			      struct brick_mbuf_view *views, unsigned int n)
{
	if (rte_pktmbuf_alloc_bulk(mp, pkts, n) != 0)
		return -1;
	for (unsigned int i = 0; i < n; i++)
		fill_view(pkts[i], &views[i]);
	return 0;
}

int brick_tx_desc_burst(struct rte_mempool *mp, uint16_t port, uint16_t queue,
			struct brick_tx_desc *descs, uint16_t n, uint16_t ncopy, uint16_t noffload,
			uint16_t *refused)
{
	struct rte_mbuf *m[64], *fresh[64];
	uint16_t sent, ready = 0, j = 0;

	*refused = 0;
	if (n == 0)
		return 0;
	if (n > 64)
		n = 64;
	if (ncopy > n)
		ncopy = n;
	if (ncopy > 0 && rte_pktmbuf_alloc_bulk(mp, fresh, ncopy) != 0)
		goto fail;
	for (uint16_t i = 0; i < n; i++) {
		struct brick_tx_desc *d = &descs[i];
		if (d->m != NULL) {
			struct rte_mbuf *mb = d->m;
			mb->data_off = d->data_off;
			mb->data_len = d->len;
			mb->pkt_len = d->len;
			m[i] = mb;
		} else {
			char *dst;
			if (j >= ncopy)
				goto fail_fresh;
			dst = rte_pktmbuf_append(fresh[j], d->len);
			if (dst == NULL)
				goto fail_fresh;
			rte_memcpy(dst, d->data, d->len);
			m[i] = fresh[j++];
		}
		m[i]->ol_flags = d->ol_flags;
		if (d->ol_flags != 0) {
			m[i]->l2_len = d->l2_len;
			m[i]->l3_len = d->l3_len;
		}
	}
	ready = n;
	if (noffload > 0)
		ready = rte_eth_tx_prepare(port, queue, m, n);
	*refused = n - ready;
	sent = rte_eth_tx_burst(port, queue, m, ready);
	if (sent < n)
		rte_pktmbuf_free_bulk(&m[sent], n - sent);
	return sent;

fail_fresh:
	rte_pktmbuf_free_bulk(fresh, ncopy);
fail:
	for (uint16_t i = 0; i < n; i++)
		if (descs[i].m != NULL)
			rte_pktmbuf_free(descs[i].m);
	return -1;
}

int brick_tx_tso(struct rte_mempool *mp, uint16_t port, uint16_t queue, const void *data,
		 uint32_t len, uint64_t ol_flags, uint16_t l2_len, uint16_t l3_len, uint16_t l4_len,
		 uint16_t tso_segsz, uint16_t *refused)
{
	struct rte_mbuf *segs[64];
	const char *src = data;
	uint32_t room, left = len;
	unsigned int n;

	*refused = 0;
	if (len == 0 || len > 65535 + 512)
		return -1;
	room = rte_pktmbuf_data_room_size(mp) - RTE_PKTMBUF_HEADROOM;
	if (room == 0)
		return -1;
	n = (len + room - 1) / room;
	if (n > 64 || rte_pktmbuf_alloc_bulk(mp, segs, n) != 0)
		return -1;
	for (unsigned int i = 0; i < n; i++) {
		uint16_t part = left < room ? left : room;
		char *dst = rte_pktmbuf_append(segs[i], part);
		if (dst == NULL) {
			/* Cannot happen (part <= room), but never write through NULL: free the
			 * chain built so far (segs[0..i)) and the unchained rest. */
			if (i > 0)
				rte_pktmbuf_free(segs[0]);
			rte_pktmbuf_free_bulk(&segs[i], n - i);
			return -1;
		}
		rte_memcpy(dst, src, part);
		src += part;
		left -= part;
		if (i > 0 && rte_pktmbuf_chain(segs[0], segs[i]) != 0) {
			/* segs[0..i) are chained to segs[0]; free the chain and the rest. */
			rte_pktmbuf_free(segs[0]);
			rte_pktmbuf_free_bulk(&segs[i], n - i);
			return -1;
		}
	}
	segs[0]->ol_flags = ol_flags;
	segs[0]->l2_len = l2_len;
	segs[0]->l3_len = l3_len;
	segs[0]->l4_len = l4_len;
	segs[0]->tso_segsz = tso_segsz;
	if (rte_eth_tx_prepare(port, queue, segs, 1) != 1) {
		*refused = 1;
		rte_pktmbuf_free(segs[0]);
		return 0;
	}
	if (rte_eth_tx_burst(port, queue, segs, 1) != 1) {
		rte_pktmbuf_free(segs[0]);
		return 0;
	}
	return 1;
}

int brick_mempool_full(const struct rte_mempool *mp)
{
	return rte_mempool_full(mp);
}
