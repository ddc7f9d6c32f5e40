/* Out-of-line wrappers for DPDK's static inline fast path (bindgen cannot bind inline
 * functions) and for values only reachable through macros or thread-local variables. */
#ifndef BRICK_DPDK_SHIM_H
#define BRICK_DPDK_SHIM_H
#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

uint16_t brick_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t brick_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
int brick_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **pkts, unsigned int n);
void brick_pktmbuf_free(struct rte_mbuf *m);
void brick_pktmbuf_free_bulk(struct rte_mbuf **pkts, unsigned int n);
/* Pointer to the first data byte of segment m. */
void *brick_mbuf_data(struct rte_mbuf *m);
uint16_t brick_mbuf_data_len(const struct rte_mbuf *m);
uint32_t brick_mbuf_pkt_len(const struct rte_mbuf *m);
uint64_t brick_mbuf_ol_flags(const struct rte_mbuf *m);
struct rte_mbuf *brick_mbuf_next(const struct rte_mbuf *m);
/* Appends len bytes copied from data to a fresh single-segment mbuf; -1 if they do not fit. */
int brick_mbuf_fill(struct rte_mbuf *m, const void *data, uint16_t len);
int brick_rte_errno(void);
/* rte_lcore_id(): the calling thread's lcore id, UINT32_MAX (LCORE_ID_ANY) if it has none. */
unsigned int brick_lcore_id(void);

/* What the receive path needs of one mbuf, read in one call. */
struct brick_mbuf_view {
	void *data;              /* first byte of the first segment */
	struct rte_mbuf *next;   /* next segment, NULL when single-segment */
	uint64_t ol_flags;
	uint32_t pkt_len;        /* all segments */
	uint16_t data_len;       /* first segment */
	uint16_t nb_segs;
	void *buf;               /* start of the first segment's buffer (buf_addr) */
	uint16_t buf_len;        /* its size */
	uint16_t data_off;       /* offset of the first data byte in it */
	uint16_t exclusive;      /* 1: one direct segment with refcnt 1, ours to lend */
};

/* rte_eth_rx_burst, then fills views[i] for each received mbuf. */
uint16_t brick_rx_burst_views(uint16_t port, uint16_t queue, struct rte_mbuf **pkts,
			      struct brick_mbuf_view *views, uint16_t n);

/* rte_pktmbuf_alloc_bulk of n fresh mbufs from mp, then fills views[i] of each (buf,
 * buf_len, data_off; the rest as for a received mbuf). 0, or -1 with nothing taken. */
int brick_pktmbuf_alloc_views(struct rte_mempool *mp, struct rte_mbuf **pkts,
			      struct brick_mbuf_view *views, unsigned int n);

/* One frame to transmit: either an mbuf we own (`m`, whose data now start at `data_off` and
 * are `len` bytes) or bytes to copy into a fresh mbuf (`m` NULL, `data`). `ol_flags` (with
 * `l2_len`, `l3_len`) asks the port for offloads (RTE_MBUF_F_TX_*), 0 for none. */
struct brick_tx_desc {
	struct rte_mbuf *m;
	const void *data;
	uint64_t ol_flags;
	uint16_t data_off;
	uint16_t len;
	uint16_t l2_len;
	uint16_t l3_len;
};

/* Transmits n frames in order on port/queue: owned mbufs are fixed up and sent as they are,
 * the ncopy others are copied into mbufs allocated from mp in one bulk. When noffload > 0
 * frames ask for offloads, rte_eth_tx_prepare readies the burst first: the frames from the
 * first it refuses on are not sent, and *refused says how many. What is not sent is freed.
 * Returns how many were sent, or -1 when mp had fewer than ncopy free mbufs or a copied
 * frame did not fit one (nothing sent, every owned mbuf freed). */
int brick_tx_desc_burst(struct rte_mempool *mp, uint16_t port, uint16_t queue,
			struct brick_tx_desc *descs, uint16_t n, uint16_t ncopy, uint16_t noffload,
			uint16_t *refused);

/* Sends one frame of len bytes (up to 64 KiB) as a chain of mbufs from mp, asking the port
 * for TCP segmentation (RTE_MBUF_F_TX_TCP_SEG | the IP flags in ol_flags) into segments of
 * tso_segsz payload bytes; l2/l3/l4_len give the header lengths. Returns 1 if the port took
 * it, 0 if not (ring full or refused by rte_eth_tx_prepare: *refused is 1 then), -1 when mp
 * had too few mbufs. Nothing is leaked in any case. */
int brick_tx_tso(struct rte_mempool *mp, uint16_t port, uint16_t queue, const void *data,
		 uint32_t len, uint64_t ol_flags, uint16_t l2_len, uint16_t l3_len, uint16_t l4_len,
		 uint16_t tso_segsz, uint16_t *refused);

/* Whether every object of mp is back in it (none held by a packet or a ring). */
int brick_mempool_full(const struct rte_mempool *mp);
#endif
