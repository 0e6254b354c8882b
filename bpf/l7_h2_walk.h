/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * l7_h2_walk.h: the frame walk of one syscall of an HTTP/2 connection
 * (included by l7.bpf.c before rf_l7_emit; the state is l7_h2.h's).
 *
 * A bpf_loop walks the call's bytes from its first to its last through a
 * cursor over its buffer or iovecs (gRPC C-core sends ~27 iovecs in one
 * sendmsg, node:http2 a header and a payload iovec per DATA frame), reading
 * only frame headers: kept bytes (preface, headers, the payloads user space
 * parses) are copied into the window (rf_l7_scratch.data), cut payloads are
 * listed as struct rf_l7_cut and never read. A call inside a large DATA frame
 * costs one cut. Everything the loop carries lives in a per-CPU map value,
 * opaque to the verifier, so the callback's states converge at once
 * (docs/design/l7-in-kernel.md §4).
 *
 * The output follows the record grammar of struct rf_l7_capture: kept,
 * cut, kept... in call order; once the window is full (or a copy failed)
 * nothing more is kept or cut, and the rest of the call is what was not
 * captured (user space gaps it, as it always did past the capture).
 */

/* Steps per call: a step is an iovec, a header, a payload or the preface, or a piece of one at an iovec's end. */
#define RF_L7_H2_MAX_STEPS (1 << 14)

/* rf_h2dir.state of a new connection's other direction: like SEEK, but its first sync is not a resync. */
#define RF_H2_FIND 3

struct rf_l7_h2_walk {
	__u64 iov;       /* the call's iovec array; 0: one buffer (the only segment) */
	__u64 iovcnt;
	__u64 idx;       /* next iovec to read */
	__u64 seg_base;  /* user address of the current segment's first byte */
	__u64 seg_start; /* its position in the call's bytes */
	__u64 seg_end;
	__u64 pos;       /* next byte of the call */
	__u64 n;         /* bytes the call moved */
	__u64 cut_bytes;
	__u32 kept;      /* bytes in the window */
	__u32 limit;     /* most bytes kept (RF_L7_MAX_CAPTURE) */
	__u32 ncuts;
	__u32 frames;    /* frame headers completed */
	__u8  fail;      /* 1: a header failed the check; 2: the call's bytes could not be walked to its end */
	__u8  full;      /* nothing more kept or cut: window full, copy failed, or a check-only walk */
	__u8  flags;     /* enum rf_l7_flag bits for the record */
	__u8  strict;    /* the first header must be of a known type (a seeking direction) */
	__u8  cut_limit; /* a payload kept for want of a free cut */
	__u8  over;      /* a kept byte did not fit the window */
	__u8  _pad[2];
	struct rf_uiovec v; /* the iovec being read, off the stack */
	struct rf_h2dir d;  /* the direction's state as walked; stored back when the walk is kept */
	__u32 ckey;         /* a counter's index, off the stack (a map key may be in a map value) */
	struct rf_h2dir fresh; /* a seeking direction's trial state */
	__u8  _pad2[4];
	__u8  h[24];     /* the frame header being assembled (9 bytes) */
	struct rf_l7_cut cuts[RF_L7_MAX_CUTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rf_l7_h2_walk);
} rf_l7_h2_walk SEC(".maps");

/* enum rf_l7_h2_counter, per CPU */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RF_L7_H2_NR);
	__type(key, __u32);
	__type(value, __u64);
} rf_l7_h2 SEC(".maps");

static __always_inline void rf_l7_h2_count(struct rf_l7_h2_walk *w, __u32 which, __u64 by)
{
	__u64 *n;

	w->ckey = which;
	n = bpf_map_lookup_elem(&rf_l7_h2, &w->ckey);

	if (n)
		*n += by;
}

/* Bytes [pos, pos + k) of the call, at user address src, into the window. */
static __always_inline void rf_l7_h2_keep(struct rf_l7_h2_walk *w, struct rf_l7_scratch *s, __u64 src, __u64 k)
{
	__u64 m, off;

	if (w->full || !k)
		return;
	m = w->kept < w->limit ? w->limit - w->kept : 0;
	if (k < m)
		m = k;
	/* kept < limit <= RF_L7_MAX_CAPTURE, a power of two: the mask only informs the verifier */
	off = w->kept & (RF_L7_MAX_CAPTURE - 1);
	barrier_var(m);
	if (m > RF_L7_MAX_CAPTURE)
		m = RF_L7_MAX_CAPTURE;
	if (m && bpf_probe_read_user(s->data + off, m, (void *)src)) {
		w->flags |= RF_L7_F_COPY_FAILED;
		w->full = 1;
		return;
	}
	w->kept += m;
	if (m < k) {
		w->full = 1;
		w->over = 1;
	}
}

/* Bytes [pos, pos + k) are cut. Returns 0 when no cut is free (the caller keeps them). */
static __always_inline int rf_l7_h2_cut(struct rf_l7_h2_walk *w, __u64 k)
{
	__u32 i = w->ncuts;
	struct rf_l7_cut *p;

	if (w->full)
		return 0;
	/* a payload that goes on in the next iovec: the same cut grows */
	if (i > 0 && i <= RF_L7_MAX_CUTS) {
		p = &w->cuts[(i - 1) & (RF_L7_MAX_CUTS - 1)];
		if ((__u64)p->at + p->len == w->pos) {
			p->len += k;
			w->cut_bytes += k;
			return 1;
		}
	}
	/* a cut costs its 8 bytes in the record: a piece that small is kept instead (WINDOW_UPDATE, PING) */
	if (k <= sizeof(struct rf_l7_cut))
		return 0;
	if (i >= RF_L7_MAX_CUTS) {
		w->cut_limit = 1;
		return 0;
	}
	p = &w->cuts[i & (RF_L7_MAX_CUTS - 1)];
	p->at = w->pos;
	p->len = k;
	w->ncuts = i + 1;
	w->cut_bytes += k;
	return 1;
}

/*
 * One step of the walk (a bpf_loop callback, no context: the maps are looked
 * up here, so that rf_l7_h2_feed needs no stack of its own; the chain
 * exit -> rf_l7_emit -> rf_l7_h2_feed -> this stays within the stack budget).
 * Returns 1 to stop.
 */
static long rf_l7_h2_step(__u32 i, void *ctx)
{
	struct rf_l7_h2_walk *w;
	struct rf_l7_scratch *s;
	struct rf_h2dir *d;
	__u64 avail, src, k;
	__u32 hh, zero = 0;

	w = bpf_map_lookup_elem(&rf_l7_h2_walk, &zero);
	s = bpf_map_lookup_elem(&rf_l7_scratch, &zero);
	if (!w || !s)
		return 1;
	d = &w->d;
	if (w->fail || w->pos >= w->n)
		return 1;
	/* the cursor: the next iovec once this one is used up */
	if (w->pos >= w->seg_end) {
		if (!w->iov || w->idx >= w->iovcnt || w->idx >= RF_L7_MAX_IOV) {
			w->fail = 2;
			return 1;
		}
		if (bpf_probe_read_user(&w->v, sizeof(w->v), (void *)(w->iov + w->idx * sizeof(w->v)))) {
			w->flags |= RF_L7_F_COPY_FAILED;
			w->fail = 2;
			return 1;
		}
		w->idx++;
		w->seg_base = w->v.base;
		w->seg_start = w->seg_end;
		w->seg_end += w->v.len;
		return 0;
	}
	avail = (w->seg_end < w->n ? w->seg_end : w->n) - w->pos;
	src = w->seg_base + (w->pos - w->seg_start);
	if (d->preface_left) {
		k = d->preface_left < avail ? d->preface_left : avail;
		rf_l7_h2_keep(w, s, src, k);
		d->preface_left -= k;
		w->pos += k;
		return 0;
	}
	if (d->frame_left) {
		k = d->frame_left < avail ? d->frame_left : avail;
		if (!d->cut || !rf_l7_h2_cut(w, k))
			rf_l7_h2_keep(w, s, src, k);
		d->frame_left -= k;
		w->pos += k;
		return 0;
	}
	/* a frame header, maybe the rest of one the previous call began */
	hh = d->hdr_have;
	barrier_var(hh);
	if (hh > 8) {
		w->fail = 1;
		return 1;
	}
	k = 9 - hh;
	if (k > avail)
		k = avail;
	/* hh <= 8 and k <= 9 already: the masks only inform the verifier (h has room for 15 + 9) */
	hh &= 15;
	barrier_var(k);
	if (k > 9)
		k = 9;
	if (bpf_probe_read_user(w->h + hh, k, (void *)src)) {
		w->flags |= RF_L7_F_COPY_FAILED;
		w->fail = 2;
		return 1;
	}
	rf_l7_h2_keep(w, s, src, k);
	w->pos += k;
	if (hh + k < 9) {
		d->hdr_have = hh + k;
		return 0;
	}
	d->hdr_have = 0;
	if (!rf_h2_plausible(w->h, w->strict && !w->frames)) {
		w->fail = 1;
		return 1;
	}
	w->frames++;
	d->type = w->h[3];
	d->cut = rf_h2_cuts(w->h);
	d->frame_left = rf_h2_len(w->h);
	return 0;
}

/* Walks the call c from direction state h (check: nothing kept or cut, the walk only tells if it holds). */
static __always_inline void rf_l7_h2_walk_call(struct rf_l7_h2_walk *w, struct rf_l7_call *c,
					       struct rf_h2dir *h, int check)
{
	/*
	 * Kept bytes are headers, never bodies: up to the hard maximum whatever
	 * rf_l7_capture_bytes says (the design's 16 KiB per record), since a
	 * header block cut short loses the connection's HPACK table (many
	 * streams' HEADERS in one write pass 4 KiB).
	 */
	__u32 limit = RF_L7_MAX_CAPTURE;

	w->iov = c->iovcnt ? c->iov : 0;
	w->iovcnt = c->iovcnt;
	w->idx = 0;
	w->seg_base = c->iovcnt ? 0 : c->buf;
	w->seg_start = 0;
	w->seg_end = c->iovcnt ? 0 : (c->buflen < c->bytes ? c->buflen : c->bytes);
	w->pos = 0;
	w->n = c->bytes;
	w->cut_bytes = 0;
	w->kept = 0;
	w->limit = limit;
	w->ncuts = 0;
	w->frames = 0;
	w->fail = 0;
	w->full = check;
	w->flags = 0;
	w->strict = check;
	w->cut_limit = 0;
	w->over = 0;
	w->d = *h;
	__builtin_memcpy(w->h, h->hdr, sizeof(h->hdr));
	bpf_loop(RF_L7_H2_MAX_STEPS, rf_l7_h2_step, NULL, 0);
	if (w->pos < w->n && !w->fail)
		w->fail = 2; /* out of steps */
}

/*
 * A call of an HTTP/2 direction (st->h2[dir].state != RF_H2_NONE): its kept
 * bytes into the window and its cuts into r (r->ncuts; the cuts themselves
 * stay in w for the caller to write). Returns the bytes now in the window:
 * r->captured_len (what the caller copied) when the call goes out uncut. A
 * global function: verified once, not at every caller; the caller's maps
 * passed in, so that it has no stack.
 */
__noinline int rf_l7_h2_feed(struct rf_l7_call *c, struct rf_l7_capture *r, struct rf_l7_conn *st,
			     struct rf_l7_h2_walk *w)
{
	struct rf_h2dir *h;
	__u32 captured;

	if (!c || !r || !st || !w)
		return 0;
	captured = r->captured_len;
	h = &st->h2[c->direction & 1];
	if (h->state == RF_H2_NONE)
		return captured;
	/* MSG_TRUNC: the bytes were discarded unread, so where frames go on is unknown */
	if (c->nocopy) {
		if (h->state == RF_H2_FRAMES)
			rf_l7_h2_count(w, RF_L7_H2_FRAME_LOST, 1);
		h->state = RF_H2_SEEK;
		return captured;
	}
	if (h->state != RF_H2_FRAMES) {
		/*
		 * Framing starts again at a call whose frames chain to its end:
		 * two plausible headers, or one frame that ends with the call
		 * (the caller copied it as before: it goes out uncut otherwise).
		 */
		__builtin_memset(&w->fresh, 0, sizeof(w->fresh));
		rf_l7_h2_walk_call(w, c, &w->fresh, 1);
		if (w->fail || !w->frames || (w->frames < 2 && (w->d.frame_left || w->d.hdr_have)))
			return captured;
		if (h->state == RF_H2_SEEK)
			rf_l7_h2_count(w, RF_L7_H2_RESYNCED, 1);
		__builtin_memset(h, 0, sizeof(*h));
		h->state = RF_H2_FRAMES;
	}
	rf_l7_h2_walk_call(w, c, h, 0);
	if (w->fail) {
		rf_l7_h2_count(w, RF_L7_H2_FRAME_LOST, 1);
		h->state = RF_H2_SEEK;
	} else {
		*h = w->d;
		__builtin_memcpy(h->hdr, w->h, sizeof(h->hdr));
		h->state = RF_H2_FRAMES;
	}
	rf_l7_h2_count(w, RF_L7_H2_RECORDS, 1);
	if (w->cut_bytes)
		rf_l7_h2_count(w, RF_L7_H2_CUT_BYTES, w->cut_bytes);
	if (w->cut_limit)
		rf_l7_h2_count(w, RF_L7_H2_CUT_LIMIT, 1);
	if (w->over)
		rf_l7_h2_count(w, RF_L7_H2_KEPT_OVER, 1);
	r->ncuts = w->ncuts;
	r->flags |= w->flags;
	return w->kept;
}

/* The gate saw the client preface on direction dir: it is framed from its first byte, the other found at a call's start. */
static __always_inline void rf_l7_h2_start(struct rf_l7_conn *st, __u8 dir)
{
	__builtin_memset(st->h2, 0, sizeof(st->h2));
	st->h2[dir & 1].state = RF_H2_FRAMES;
	st->h2[dir & 1].preface_left = RF_H2_PREFACE_LEN;
	st->h2[(dir & 1) ^ 1].state = RF_H2_FIND;
}
