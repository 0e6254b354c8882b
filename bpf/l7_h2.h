/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * l7_h2.h: HTTP/2 framing state of one direction of a connection, carried
 * across syscalls in rf_l7_conns (docs/design/l7-in-kernel.md §3, slice 5),
 * and the frame header check. Pure C: no helpers, no maps (the walk that
 * uses them is l7_h2_walk.h), so a host build can include it too.
 *
 * Why: every data syscall of an HTTP/2 connection used to send its first
 * 4 KiB to user space, DATA payloads included; a read holding several frames
 * over 4 KiB lost the frame headers past the capture ("gap across frames" in
 * http2.ts). With the frame state here, only frame headers and the payloads
 * user space needs (HEADERS, CONTINUATION, PUSH_PROMISE, SETTINGS,
 * RST_STREAM, GOAWAY, unknown types) leave the kernel; DATA, PING,
 * WINDOW_UPDATE and PRIORITY payloads become cuts (struct rf_l7_cut), which
 * user space replays as gaps inside those frames.
 */
#ifndef RINGFLOW_L7_H2_H
#define RINGFLOW_L7_H2_H

/* rf_h2dir.state */
enum rf_h2_state {
	RF_H2_NONE   = 0, /* not framed here: capture records as before (not HTTP/2, or undecided) */
	RF_H2_FRAMES = 1, /* frame boundaries known: calls go out with cuts */
	RF_H2_SEEK   = 2, /* framing lost (or not known yet): calls go out uncut until one starts a plausible chain */
};

#define RF_H2_PREFACE_LEN 24 /* "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" */

/* HTTP/2 frame types (RFC 9113 6) */
#define RF_H2_DATA          0
#define RF_H2_HEADERS       1
#define RF_H2_PRIORITY      2
#define RF_H2_RST_STREAM    3
#define RF_H2_SETTINGS      4
#define RF_H2_PUSH_PROMISE  5
#define RF_H2_PING          6
#define RF_H2_GOAWAY        7
#define RF_H2_WINDOW_UPDATE 8
#define RF_H2_CONTINUATION  9

#define RF_H2_FLAG_ACK    0x1
#define RF_H2_FLAG_PADDED 0x8

/* One direction (20 bytes): where the call that comes next starts in its frames. */
struct rf_h2dir {
	__u32 frame_left;   /* payload bytes of the current frame still to come (0: a header is next) */
	__u8  state;        /* enum rf_h2_state */
	__u8  type;         /* the current frame's type */
	__u8  cut;          /* 1: its payload is cut, not kept */
	__u8  preface_left; /* client preface bytes still to come (24 at the client's first call) */
	__u8  hdr_have;     /* bytes of a frame header split across calls (0-8) ... */
	__u8  hdr[8];       /* ... and those bytes */
	__u8  _pad[3];
};

static __always_inline __u32 rf_h2_len(const __u8 *h)
{
	return (__u32)h[0] << 16 | (__u32)h[1] << 8 | h[2];
}

/*
 * Is h[0..9) a plausible frame header? RFC 9113's fixed sizes and stream
 * rules, as http2.ts checks them, and the reserved bit clear. `strict` (a
 * seeking direction's first header): known types only; otherwise types past
 * CONTINUATION are extensions, kept whole.
 */
static __always_inline int rf_h2_plausible(const __u8 *h, int strict)
{
	__u32 len = rf_h2_len(h);
	__u8 type = h[3], flags = h[4];
	int stream0 = !((h[5] & 0x7f) | h[6] | h[7] | h[8]);

	if (h[5] & 0x80)
		return 0;
	switch (type) {
	case RF_H2_DATA:
	case RF_H2_HEADERS:
	case RF_H2_PUSH_PROMISE:
	case RF_H2_CONTINUATION:
		return !stream0;
	case RF_H2_PRIORITY:
		return !stream0 && len == 5;
	case RF_H2_RST_STREAM:
		return !stream0 && len == 4;
	case RF_H2_SETTINGS:
		return stream0 && len % 6 == 0 && (!(flags & RF_H2_FLAG_ACK) || len == 0);
	case RF_H2_PING:
		return stream0 && len == 8;
	case RF_H2_GOAWAY:
		return stream0 && len >= 8;
	case RF_H2_WINDOW_UPDATE:
		return len == 4;
	}
	return !strict;
}

/*
 * Does the payload of a frame with this header stay in the kernel? Only
 * frames whose payload http2.ts does not read: DATA (unless padded: its pad
 * length is read; rare), PING, WINDOW_UPDATE, PRIORITY.
 */
static __always_inline int rf_h2_cuts(const __u8 *h)
{
	switch (h[3]) {
	case RF_H2_DATA:
		return !(h[4] & RF_H2_FLAG_PADDED);
	case RF_H2_PING:
	case RF_H2_WINDOW_UPDATE:
	case RF_H2_PRIORITY:
		return 1;
	}
	return 0;
}

#endif /* RINGFLOW_L7_H2_H */
