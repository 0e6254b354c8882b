/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * l7_h1.h: HTTP/1.x framing as a pure byte-wise state machine, one per
 * direction of a connection, carried across syscalls (issue 10,
 * docs/design/l7-in-kernel.md §2.3). It finds message boundaries only: start
 * line (request method from the gate's list, or 'HTTP/1.x NNN'), end of head
 * (CRLFCRLF or LFLF, split at any byte), Content-Length and
 * Transfer-Encoding, and the body by RFC 9112 6.3. What the head says beyond
 * that is parsed in user space from the head bytes the exchange record
 * carries (collector/l7/exchange.ts, with collector/l7/http1.ts).
 *
 * Compiled into bpf/l7.bpf.c and, with -DRF_HOST, into a host test driver
 * (test/support/l7-h1-driver.c) so that test/unit/l7-h1-kernel.test.ts can
 * hold it against collector/l7/http1.ts, the reference, at every split point.
 * Hence no helpers here and no pointer arithmetic the verifier would refuse:
 * bytes are read through RF_H1_BYTE, which l7.bpf.c bounds with a mask.
 *
 * Where it deliberately differs from http1.ts (the oracle test skips these):
 * - after a give-up the direction goes to SEEK and starts again at a later
 *   syscall whose first bytes are a start line (http1.ts stops for good);
 * - only the methods of the gate (rf_l7_signature) start a request, and field
 *   lines other than Content-Length / Transfer-Encoding are not validated
 *   (user space does that on the head bytes);
 * - a request with Upgrade does not stop the requests side: a 101 answer
 *   turns both directions into a tunnel (l7.bpf.c), a refused upgrade keeps
 *   the connection parsed.
 */
#ifndef RINGFLOW_L7_H1_H
#define RINGFLOW_L7_H1_H

#ifdef RF_HOST
#include <stdint.h>
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#endif

#ifndef RF_H1_BYTE
#define RF_H1_BYTE(buf, i) ((buf)[i])
#endif

/*
 * A scan over up to end bytes: l7.bpf.c makes it an open-coded iterator,
 * which the verifier checks until its state converges (a few passes) instead
 * of once per step as a bounded loop (a line scan of 128 steps with a few
 * branches each took rf_l7_exit_read past the 1 M instruction limit).
 */
/* Eight bytes from buf[i] as a little-endian u64 (l7.bpf.c: one load). */
#ifndef RF_H1_U64
static __always_inline __u64 rf_h1_u64(const __u8 *buf, __u32 i)
{
	__u64 v = 0;

	for (int k = 7; k >= 0; k--)
		v = v << 8 | RF_H1_BYTE(buf, i + k);
	return v;
}
#define RF_H1_U64(buf, i) rf_h1_u64(buf, i)
#endif

#ifndef RF_H1_FOR
#define RF_H1_FOR(j, end) for ((j) = 0; (j) < (end); (j)++)
#endif

/* Largest head (start line + fields) or trailer section: http1.ts MAX_HEAD_BYTES. */
#define RF_H1_MAX_HEAD       16384
/* Longest chunk-size line, its LF included: http1.ts MAX_CHUNK_LINE. */
#define RF_H1_MAX_CHUNK_LINE 1024

/* One direction of an HTTP/1 connection: 64 bytes, no implicit padding. */
struct rf_h1 {
	__u64 left;     /* bytes left in the current body (BODY) or chunk (CHUNK_DATA) */
	__u64 body;     /* body bytes of the current message, as framed */
	__u64 val;      /* number being read: packed method, Content-Length element, chunk size */
	__u64 clen;     /* the Content-Length every element so far agreed on */
	__u64 first_ns; /* edge of the syscall that moved the current message's first byte */
	__u64 last_ns;  /* edge of the latest syscall that moved bytes of it */
	__u32 seq;      /* ordinal of the current (or next) message in this direction */
	__u32 head;     /* head bytes so far; chunk-line or trailer bytes in those states */
	__u16 status;   /* status code (responses) */
	__u8  state;    /* enum rf_h1_state */
	__u8  sub;      /* the state's own position (line matcher, start-line part) */
	__u8  k;        /* characters matched or digits read in the current token */
	__u8  flags;    /* enum rf_h1_flag */
	__u8  method;   /* enum rf_h1_method of the current request */
	__u8  why;      /* reason of the last give-up (an rf_l7_parse_counter index) */
};

enum rf_h1_state {
	RF_H1_START       = 0,  /* between messages: CR/LF skipped, anything else starts one */
	RF_H1_RLINE       = 1,  /* request line */
	RF_H1_SLINE       = 2,  /* status line */
	RF_H1_HEAD        = 3,  /* field lines */
	RF_H1_BODY        = 4,  /* Content-Length body: left bytes to go */
	RF_H1_CHUNK_LINE  = 5,  /* chunk-size [ext] line */
	RF_H1_CHUNK_DATA  = 6,  /* left bytes of chunk data */
	RF_H1_CHUNK_END   = 7,  /* the CRLF after chunk data */
	RF_H1_TRAILERS    = 8,  /* trailer section after the last chunk */
	RF_H1_CLOSE       = 9,  /* response body until the connection ends */
	RF_H1_SEEK        = 10, /* framing lost: waiting for a syscall that starts with a start line */
	RF_H1_TUNNEL      = 11, /* CONNECT / 101: not HTTP any more */
};

enum rf_h1_flag {
	RF_H1F_HAS_CL  = 1,   /* a Content-Length element was read: clen */
	RF_H1F_CL_BAD  = 2,   /* a Content-Length was malformed or disagreed */
	RF_H1F_TE      = 4,   /* Transfer-Encoding present */
	RF_H1F_CHUNKED = 8,   /* ... and its last coding (so far) is chunked */
	RF_H1F_TOKNE   = 16,  /* the current Transfer-Encoding token is not empty */
	RF_H1F_TOKBAD  = 32,  /* ... and is not "chunked" */
	RF_H1F_MCL     = 64,  /* the field name read so far is a prefix of content-length */
	RF_H1F_MTE     = 128, /* ... of transfer-encoding */
};

/* Request methods: the ones rf_l7_signature (l7.bpf.c) and http1.ts SNIFF_METHODS know. */
enum rf_h1_method {
	RF_H1_M_NONE = 0, RF_H1_M_GET, RF_H1_M_HEAD, RF_H1_M_POST, RF_H1_M_PUT, RF_H1_M_DELETE,
	RF_H1_M_CONNECT, RF_H1_M_OPTIONS, RF_H1_M_TRACE, RF_H1_M_PATCH, RF_H1_M_OTHER,
};

/* What a step reports to its caller. */
enum rf_h1_event {
	RF_H1_EV_NONE   = 0,
	RF_H1_EV_START  = 1, /* the byte just read is the first of a message (first_ns is set) */
	RF_H1_EV_HEAD   = 2, /* the byte just read ended the head: call rf_h1_frame */
	RF_H1_EV_END    = 3, /* the message ended with the bytes just read (seq already advanced) */
	RF_H1_EV_GIVEUP = 4, /* framing lost (why); the direction is in SEEK */
	RF_H1_EV_INFO   = 5, /* rf_h1_frame: a 1xx other than 101, not counted; the final response follows */
};

/* Give-up reasons: the indexes of enum rf_l7_parse_counter (events.h) they are counted under. */
#define RF_H1_WHY_HEAD_TOO_LONG 1
#define RF_H1_WHY_BAD_START     2
#define RF_H1_WHY_BAD_FRAMING   3

/* Sub-states. Request line: */
#define RF_H1_RL_METHOD 0
#define RF_H1_RL_TGT0   1
#define RF_H1_RL_TGT    2
#define RF_H1_RL_VER    3
#define RF_H1_RL_EOL    4
#define RF_H1_RL_CR     5
/* Status line: */
#define RF_H1_SL_VER    0
#define RF_H1_SL_SP     1
#define RF_H1_SL_D      2
#define RF_H1_SL_AFTER  3
#define RF_H1_SL_REASON 4
#define RF_H1_SL_CR     5
/* Field lines (HEAD; TRAILERS uses START, CR, OTHER): */
#define RF_H1_LS_START  0
#define RF_H1_LS_CR     1
#define RF_H1_LS_NAME   2
#define RF_H1_LS_OTHER  3
#define RF_H1_LS_CL_PRE 4
#define RF_H1_LS_CL_DIG 5
#define RF_H1_LS_CL_POST 6
#define RF_H1_LS_CL_CR  7
#define RF_H1_LS_TE_PRE 8
#define RF_H1_LS_TE_TOK 9
#define RF_H1_LS_TE_POST 10
#define RF_H1_LS_TE_CR  11
/* Chunk-size line: */
#define RF_H1_CS_DIG    0
#define RF_H1_CS_WS     1
#define RF_H1_CS_EXT    2
#define RF_H1_CS_CR     3

/* Eight characters packed little-endian into a u64: literals read by index without an array. */
#define RF_H1_P8(a, b, c, d, e, f, g, h)                                                     \
	((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 | (__u64)(e) << 32 | \
	 (__u64)(f) << 40 | (__u64)(g) << 48 | (__u64)(h) << 56)

/* Character k (< 24) of the literal packed as (w0, w1, w2). */
static __always_inline __u8 rf_h1_lit(__u64 w0, __u64 w1, __u64 w2, __u32 k)
{
	__u64 w = k < 8 ? w0 : k < 16 ? w1 : w2;

	return (__u8)(w >> ((k & 7) * 8));
}

/* "content-length" (14), "transfer-encoding" (17), "chunked" (7), "HTTP/1." (7) */
#define RF_H1_CL(k)  rf_h1_lit(RF_H1_P8('c', 'o', 'n', 't', 'e', 'n', 't', '-'), \
			       RF_H1_P8('l', 'e', 'n', 'g', 't', 'h', 0, 0), 0, k)
#define RF_H1_TE(k)  rf_h1_lit(RF_H1_P8('t', 'r', 'a', 'n', 's', 'f', 'e', 'r'), \
			       RF_H1_P8('-', 'e', 'n', 'c', 'o', 'd', 'i', 'n'), 'g', k)
#define RF_H1_CHK(k) rf_h1_lit(RF_H1_P8('c', 'h', 'u', 'n', 'k', 'e', 'd', 0), 0, 0, k)
#define RF_H1_VER(k) rf_h1_lit(RF_H1_P8('H', 'T', 'T', 'P', '/', '1', '.', 0), 0, 0, k)

/* A method name, A-Z only, packed 5 bits a letter (at most 9 letters: 45 bits). */
#define RF_H1_L(c) ((__u64)((c) - 'A' + 1))
#define RF_H1_M3(a, b, c) ((RF_H1_L(a) << 10) | (RF_H1_L(b) << 5) | RF_H1_L(c))
#define RF_H1_M4(a, b, c, d) ((RF_H1_M3(a, b, c) << 5) | RF_H1_L(d))
#define RF_H1_M5(a, b, c, d, e) ((RF_H1_M4(a, b, c, d) << 5) | RF_H1_L(e))
#define RF_H1_M6(a, b, c, d, e, f) ((RF_H1_M5(a, b, c, d, e) << 5) | RF_H1_L(f))
#define RF_H1_M7(a, b, c, d, e, f, g) ((RF_H1_M6(a, b, c, d, e, f) << 5) | RF_H1_L(g))
#define RF_H1_M8(a, b, c, d, e, f, g, h) ((RF_H1_M7(a, b, c, d, e, f, g) << 5) | RF_H1_L(h))
#define RF_H1_M9(a, b, c, d, e, f, g, h, i) ((RF_H1_M8(a, b, c, d, e, f, g, h) << 5) | RF_H1_L(i))

/* The method of a packed name; NONE for a name the gate does not know. */
static __always_inline __u8 rf_h1_method_of(__u64 v)
{
	switch (v) {
	case RF_H1_M3('G', 'E', 'T'): return RF_H1_M_GET;
	case RF_H1_M4('H', 'E', 'A', 'D'): return RF_H1_M_HEAD;
	case RF_H1_M4('P', 'O', 'S', 'T'): return RF_H1_M_POST;
	case RF_H1_M3('P', 'U', 'T'): return RF_H1_M_PUT;
	case RF_H1_M6('D', 'E', 'L', 'E', 'T', 'E'): return RF_H1_M_DELETE;
	case RF_H1_M7('C', 'O', 'N', 'N', 'E', 'C', 'T'): return RF_H1_M_CONNECT;
	case RF_H1_M7('O', 'P', 'T', 'I', 'O', 'N', 'S'): return RF_H1_M_OPTIONS;
	case RF_H1_M5('T', 'R', 'A', 'C', 'E'): return RF_H1_M_TRACE;
	case RF_H1_M5('P', 'A', 'T', 'C', 'H'): return RF_H1_M_PATCH;
	case RF_H1_M8('P', 'R', 'O', 'P', 'F', 'I', 'N', 'D'):
	case RF_H1_M9('P', 'R', 'O', 'P', 'P', 'A', 'T', 'C', 'H'):
	case RF_H1_M5('M', 'K', 'C', 'O', 'L'):
	case RF_H1_M4('C', 'O', 'P', 'Y'):
	case RF_H1_M4('M', 'O', 'V', 'E'):
	case RF_H1_M4('L', 'O', 'C', 'K'):
	case RF_H1_M6('U', 'N', 'L', 'O', 'C', 'K'):
	case RF_H1_M6('S', 'E', 'A', 'R', 'C', 'H'):
	case RF_H1_M6('R', 'E', 'P', 'O', 'R', 'T'):
	case RF_H1_M5('P', 'U', 'R', 'G', 'E'):
		return RF_H1_M_OTHER;
	}
	return RF_H1_M_NONE;
}

/* RFC 9110 tchar */
static __always_inline int rf_h1_tchar(__u8 c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return 1;
	switch (c) {
	case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
	case '-': case '.': case '^': case '_': case '`': case '|': case '~':
		return 1;
	}
	return 0;
}

static __always_inline __u8 rf_h1_lower(__u8 c)
{
	return c >= 'A' && c <= 'Z' ? c | 0x20 : c;
}

static __always_inline int rf_h1_ows(__u8 c)
{
	return c == ' ' || c == '\t';
}

/* The direction lost framing: SEEK, and the message in progress (if any) used its ordinal. */
static __always_inline int rf_h1_giveup(struct rf_h1 *d, __u8 why)
{
	if (d->state != RF_H1_START && d->state != RF_H1_SEEK && d->state != RF_H1_TUNNEL)
		d->seq++;
	d->state = RF_H1_SEEK;
	d->why = why;
	return RF_H1_EV_GIVEUP;
}

/* The current message is complete: the next byte starts another (or nothing, in a tunnel). */
static __always_inline int rf_h1_end(struct rf_h1 *d, int tunnel)
{
	d->seq++;
	d->state = tunnel ? RF_H1_TUNNEL : RF_H1_START;
	return RF_H1_EV_END;
}

/* One Content-Length element read (at ',' or the end of its line). */
static __always_inline void rf_h1_cl_elem(struct rf_h1 *d, int empty)
{
	if (empty || d->k > 15)
		d->flags |= RF_H1F_CL_BAD;
	else if (!(d->flags & RF_H1F_HAS_CL))
		d->clen = d->val, d->flags |= RF_H1F_HAS_CL;
	else if (d->clen != d->val)
		d->flags |= RF_H1F_CL_BAD;
}

/* One Transfer-Encoding coding read: the last non-empty one decides chunked. */
static __always_inline void rf_h1_te_tok(struct rf_h1 *d)
{
	if (!(d->flags & RF_H1F_TOKNE))
		return;
	if (!(d->flags & RF_H1F_TOKBAD) && d->k == 7)
		d->flags |= RF_H1F_CHUNKED;
	else
		d->flags &= ~RF_H1F_CHUNKED;
	d->flags &= ~(RF_H1F_TOKNE | RF_H1F_TOKBAD);
}

/* One byte of a field line (HEAD). Returns HEAD at the empty line that ends the head. */
static __always_inline int rf_h1_field(struct rf_h1 *d, __u8 c)
{
	switch (d->sub) {
	case RF_H1_LS_START:
		if (c == '\n')
			return RF_H1_EV_HEAD;
		if (c == '\r') {
			d->sub = RF_H1_LS_CR;
		} else if (rf_h1_tchar(c)) {
			c = rf_h1_lower(c);
			d->flags = (d->flags & ~(RF_H1F_MCL | RF_H1F_MTE)) |
				   (c == 'c' ? RF_H1F_MCL : 0) | (c == 't' ? RF_H1F_MTE : 0);
			d->k = 1;
			/* a field framing does not need: the rest of its line is a run (rf_h1_skip) */
			d->sub = d->flags & (RF_H1F_MCL | RF_H1F_MTE) ? RF_H1_LS_NAME : RF_H1_LS_OTHER;
		} else {
			d->sub = RF_H1_LS_OTHER; /* obs-fold or a malformed line: user space judges it */
		}
		return RF_H1_EV_NONE;
	case RF_H1_LS_CR:
		if (c == '\n')
			return RF_H1_EV_HEAD;
		d->sub = RF_H1_LS_OTHER;
		return RF_H1_EV_NONE;
	case RF_H1_LS_NAME:
		if (c == ':') {
			if ((d->flags & RF_H1F_MCL) && d->k == 14) {
				d->sub = RF_H1_LS_CL_PRE;
			} else if ((d->flags & RF_H1F_MTE) && d->k == 17) {
				d->flags |= RF_H1F_TE;
				d->flags &= ~(RF_H1F_TOKNE | RF_H1F_TOKBAD);
				d->sub = RF_H1_LS_TE_PRE;
			} else {
				d->sub = RF_H1_LS_OTHER;
			}
		} else if (c == '\n') {
			d->sub = RF_H1_LS_START;
		} else if (rf_h1_tchar(c)) {
			c = rf_h1_lower(c);
			if (d->k >= 14 || c != RF_H1_CL(d->k))
				d->flags &= ~RF_H1F_MCL;
			if (d->k >= 17 || c != RF_H1_TE(d->k))
				d->flags &= ~RF_H1F_MTE;
			if (d->k < 32)
				d->k++;
			if (!(d->flags & (RF_H1F_MCL | RF_H1F_MTE)))
				d->sub = RF_H1_LS_OTHER;
		} else {
			d->sub = RF_H1_LS_OTHER;
		}
		return RF_H1_EV_NONE;
	case RF_H1_LS_OTHER:
		if (c == '\n')
			d->sub = RF_H1_LS_START;
		return RF_H1_EV_NONE;
	case RF_H1_LS_CL_PRE:
	case RF_H1_LS_CL_DIG:
	case RF_H1_LS_CL_POST:
		if (c >= '0' && c <= '9' && d->sub != RF_H1_LS_CL_POST) {
			if (d->sub == RF_H1_LS_CL_PRE)
				d->val = 0, d->k = 0;
			if (d->k < 16)
				d->val = d->val * 10 + (c - '0');
			if (d->k < 32)
				d->k++;
			d->sub = RF_H1_LS_CL_DIG;
		} else if (rf_h1_ows(c)) {
			if (d->sub == RF_H1_LS_CL_DIG)
				d->sub = RF_H1_LS_CL_POST;
		} else if (c == ',' || c == '\r' || c == '\n') {
			rf_h1_cl_elem(d, d->sub == RF_H1_LS_CL_PRE);
			d->sub = c == ',' ? RF_H1_LS_CL_PRE : c == '\r' ? RF_H1_LS_CL_CR : RF_H1_LS_START;
		} else {
			d->flags |= RF_H1F_CL_BAD;
			d->sub = RF_H1_LS_OTHER;
		}
		return RF_H1_EV_NONE;
	case RF_H1_LS_CL_CR:
		if (c == '\n') {
			d->sub = RF_H1_LS_START;
		} else {
			d->flags |= RF_H1F_CL_BAD; /* a CR inside the value */
			d->sub = RF_H1_LS_OTHER;
		}
		return RF_H1_EV_NONE;
	case RF_H1_LS_TE_PRE:
	case RF_H1_LS_TE_TOK:
	case RF_H1_LS_TE_POST:
		if (rf_h1_ows(c)) {
			if (d->sub == RF_H1_LS_TE_TOK)
				d->sub = RF_H1_LS_TE_POST;
		} else if (c == ',' || c == '\r' || c == '\n') {
			rf_h1_te_tok(d);
			d->sub = c == ',' ? RF_H1_LS_TE_PRE : c == '\r' ? RF_H1_LS_TE_CR : RF_H1_LS_START;
		} else {
			if (d->sub == RF_H1_LS_TE_PRE) {
				d->k = 0;
				d->flags |= RF_H1F_TOKNE;
			} else if (d->sub == RF_H1_LS_TE_POST) {
				d->flags |= RF_H1F_TOKBAD; /* whitespace inside a coding */
			}
			if (d->k >= 7 || rf_h1_lower(c) != RF_H1_CHK(d->k))
				d->flags |= RF_H1F_TOKBAD;
			if (d->k < 32)
				d->k++;
			d->sub = RF_H1_LS_TE_TOK;
		}
		return RF_H1_EV_NONE;
	case RF_H1_LS_TE_CR:
		if (c == '\n') {
			d->sub = RF_H1_LS_START;
		} else {
			d->flags &= ~RF_H1F_CHUNKED; /* the last coding holds a CR: not chunked */
			d->sub = RF_H1_LS_OTHER;
		}
		return RF_H1_EV_NONE;
	}
	return RF_H1_EV_NONE;
}

/* One byte of a request line. */
static __always_inline int rf_h1_rline(struct rf_h1 *d, __u8 c)
{
	switch (d->sub) {
	case RF_H1_RL_METHOD:
		if (c >= 'A' && c <= 'Z' && d->k < 9) {
			d->val = (d->val << 5) | RF_H1_L(c);
			d->k++;
			return RF_H1_EV_NONE;
		}
		if (c == ' ' && (d->method = rf_h1_method_of(d->val)) != RF_H1_M_NONE) {
			d->sub = RF_H1_RL_TGT0;
			return RF_H1_EV_NONE;
		}
		break;
	case RF_H1_RL_TGT0:
	case RF_H1_RL_TGT:
		if (c == ' ' && d->sub == RF_H1_RL_TGT) {
			d->sub = RF_H1_RL_VER;
			d->k = 0;
			return RF_H1_EV_NONE;
		}
		if (c > ' ' && c != 0x7f) {
			d->sub = RF_H1_RL_TGT;
			return RF_H1_EV_NONE;
		}
		break;
	case RF_H1_RL_VER:
		if (d->k < 7 ? c == RF_H1_VER(d->k) : (c >= '0' && c <= '9')) {
			if (++d->k == 8)
				d->sub = RF_H1_RL_EOL;
			return RF_H1_EV_NONE;
		}
		break;
	case RF_H1_RL_EOL:
	case RF_H1_RL_CR:
		if (c == '\r' && d->sub == RF_H1_RL_EOL) {
			d->sub = RF_H1_RL_CR;
			return RF_H1_EV_NONE;
		}
		if (c == '\n') {
			d->state = RF_H1_HEAD;
			d->sub = RF_H1_LS_START;
			return RF_H1_EV_NONE;
		}
		break;
	}
	return rf_h1_giveup(d, RF_H1_WHY_BAD_START);
}

/* One byte of a status line. */
static __always_inline int rf_h1_sline(struct rf_h1 *d, __u8 c)
{
	switch (d->sub) {
	case RF_H1_SL_VER:
		if (d->k < 7 ? c == RF_H1_VER(d->k) : (c >= '0' && c <= '9')) {
			if (++d->k == 8)
				d->sub = RF_H1_SL_SP;
			return RF_H1_EV_NONE;
		}
		break;
	case RF_H1_SL_SP:
		if (c == ' ') {
			d->sub = RF_H1_SL_D;
			d->k = 0;
			d->status = 0;
			return RF_H1_EV_NONE;
		}
		break;
	case RF_H1_SL_D:
		if (c >= (d->k ? '0' : '1') && c <= '9') {
			d->status = d->status * 10 + (c - '0');
			if (++d->k == 3)
				d->sub = RF_H1_SL_AFTER;
			return RF_H1_EV_NONE;
		}
		break;
	case RF_H1_SL_AFTER:
	case RF_H1_SL_REASON:
		if (c == '\n') {
			d->state = RF_H1_HEAD;
			d->sub = RF_H1_LS_START;
			return RF_H1_EV_NONE;
		}
		if (c == '\r') {
			d->sub = RF_H1_SL_CR;
			return RF_H1_EV_NONE;
		}
		if (d->sub == RF_H1_SL_REASON || c == ' ') {
			d->sub = RF_H1_SL_REASON;
			return RF_H1_EV_NONE;
		}
		break;
	case RF_H1_SL_CR:
		if (c == '\n') {
			d->state = RF_H1_HEAD;
			d->sub = RF_H1_LS_START;
			return RF_H1_EV_NONE;
		}
		break;
	}
	return rf_h1_giveup(d, RF_H1_WHY_BAD_START);
}

/* One byte of a chunk-size line. */
static __always_inline int rf_h1_chunk_line(struct rf_h1 *d, __u8 c)
{
	__u8 h = c >= '0' && c <= '9' ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : 0xff;

	if (++d->head > RF_H1_MAX_CHUNK_LINE)
		return rf_h1_giveup(d, RF_H1_WHY_BAD_FRAMING);
	switch (d->sub) {
	case RF_H1_CS_DIG:
		if (h != 0xff) {
			if (d->k >= 12)
				break;
			d->val = (d->val << 4) | h;
			d->k++;
			return RF_H1_EV_NONE;
		}
		if (!d->k)
			break;
		if (rf_h1_ows(c)) {
			d->sub = RF_H1_CS_WS;
			return RF_H1_EV_NONE;
		}
		/* fall through: ';', CR or LF after the digits */
	case RF_H1_CS_WS:
		if (rf_h1_ows(c))
			return RF_H1_EV_NONE;
		if (c == ';') {
			d->sub = RF_H1_CS_EXT;
			return RF_H1_EV_NONE;
		}
		/* fall through */
	case RF_H1_CS_EXT:
		if (c == '\r') {
			d->sub = RF_H1_CS_CR;
			return RF_H1_EV_NONE;
		}
		if (c != '\n') {
			if (d->sub == RF_H1_CS_EXT)
				return RF_H1_EV_NONE;
			break;
		}
		/* fall through: LF */
	case RF_H1_CS_CR:
		if (c != '\n')
			break;
		if (!d->val) {
			d->state = RF_H1_TRAILERS;
			d->sub = RF_H1_LS_START;
			d->head = 0;
		} else {
			d->state = RF_H1_CHUNK_DATA;
			d->left = d->val;
			d->body += d->val;
		}
		return RF_H1_EV_NONE;
	}
	return rf_h1_giveup(d, RF_H1_WHY_BAD_FRAMING);
}

/* One byte of a message that is not in a body. Returns an event. */
static __always_inline int rf_h1_byte(struct rf_h1 *d, __u8 c, int resp, __u64 ts)
{
	switch (d->state) {
	case RF_H1_START:
		if (c == '\r' || c == '\n')
			return RF_H1_EV_NONE;
		d->body = 0;
		d->val = 0;
		d->clen = 0;
		d->left = 0;
		d->head = 1;
		d->status = 0;
		d->k = 0;
		d->sub = 0;
		d->flags = 0;
		d->method = RF_H1_M_NONE;
		d->first_ns = ts;
		if (resp) {
			if (c != 'H') /* as http1.ts: the first byte decides */
				return rf_h1_giveup(d, RF_H1_WHY_BAD_START);
			d->state = RF_H1_SLINE;
			d->k = 1;
		} else {
			d->state = RF_H1_RLINE;
			if (rf_h1_rline(d, c) == RF_H1_EV_GIVEUP) {
				d->seq--; /* it never started */
				return RF_H1_EV_GIVEUP;
			}
		}
		return RF_H1_EV_START;
	case RF_H1_RLINE:
	case RF_H1_SLINE:
	case RF_H1_HEAD:
		if (++d->head > RF_H1_MAX_HEAD)
			return rf_h1_giveup(d, RF_H1_WHY_HEAD_TOO_LONG);
		if (d->state == RF_H1_RLINE)
			return rf_h1_rline(d, c);
		if (d->state == RF_H1_SLINE)
			return rf_h1_sline(d, c);
		return rf_h1_field(d, c);
	case RF_H1_CHUNK_LINE:
		return rf_h1_chunk_line(d, c);
	case RF_H1_CHUNK_END:
		if (c == '\n') {
			d->state = RF_H1_CHUNK_LINE;
			d->sub = RF_H1_CS_DIG;
			d->val = 0;
			d->k = 0;
			d->head = 0;
			return RF_H1_EV_NONE;
		}
		if (c == '\r' && !d->sub) {
			d->sub = 1;
			return RF_H1_EV_NONE;
		}
		return rf_h1_giveup(d, RF_H1_WHY_BAD_FRAMING);
	case RF_H1_TRAILERS:
		if (++d->head > RF_H1_MAX_HEAD)
			return rf_h1_giveup(d, RF_H1_WHY_HEAD_TOO_LONG);
		if (d->sub != RF_H1_LS_OTHER && c == '\n')
			return rf_h1_end(d, 0);
		if (c == '\n')
			d->sub = RF_H1_LS_START;
		else if (d->sub == RF_H1_LS_START && c == '\r')
			d->sub = RF_H1_LS_CR;
		else
			d->sub = RF_H1_LS_OTHER;
		return RF_H1_EV_NONE;
	}
	return RF_H1_EV_NONE;
}

/*
 * After EV_HEAD: the body's framing (RFC 9112 6.3), given the method of the
 * request a response answers (RF_H1_M_NONE when unknown: framed as a GET, as
 * http1.ts does). Returns END (no body), INFO (a 1xx to skip), GIVEUP, or
 * NONE (a body follows). A CONNECT request, a 101, or a 2xx to CONNECT ends
 * in TUNNEL.
 */
static __always_inline int rf_h1_frame(struct rf_h1 *d, int resp, __u8 req_method)
{
	__u8 f = d->flags;

	if (resp) {
		if (d->status < 200 && d->status != 101) {
			d->state = RF_H1_START;
			return RF_H1_EV_INFO;
		}
		if (d->status == 101 || (req_method == RF_H1_M_CONNECT && d->status < 300))
			return rf_h1_end(d, 1);
		if (req_method == RF_H1_M_HEAD || d->status == 204 || d->status == 304)
			return rf_h1_end(d, 0);
	}
	if (f & RF_H1F_TE) {
		if (f & RF_H1F_CHUNKED) {
			d->state = RF_H1_CHUNK_LINE;
			d->sub = RF_H1_CS_DIG;
			d->val = 0;
			d->k = 0;
			d->head = 0;
			return RF_H1_EV_NONE;
		}
		if (!resp)
			return rf_h1_giveup(d, RF_H1_WHY_BAD_FRAMING);
		d->state = RF_H1_CLOSE;
		return RF_H1_EV_NONE;
	}
	if (f & RF_H1F_CL_BAD)
		return rf_h1_giveup(d, RF_H1_WHY_BAD_FRAMING);
	if ((f & RF_H1F_HAS_CL) && d->clen) {
		d->state = RF_H1_BODY;
		d->left = d->clen;
		d->body = d->clen;
		return RF_H1_EV_NONE;
	}
	if (resp && !(f & RF_H1F_HAS_CL)) {
		d->state = RF_H1_CLOSE;
		return RF_H1_EV_NONE;
	}
	return rf_h1_end(d, !resp && d->method == RF_H1_M_CONNECT);
}

/* Bytes of a run skipped at most per unit (a bounded loop the verifier walks once). */
#define RF_H1_RUN 64

/*
 * A run: the request target, a reason phrase, a field line or trailer line
 * not about framing, a chunk extension. Its bytes change nothing but the
 * head (or chunk-line) count until a delimiter; 0 when not in one.
 */
static __always_inline int rf_h1_run(struct rf_h1 *d)
{
	switch (d->state) {
	case RF_H1_RLINE:
		return d->sub == RF_H1_RL_TGT ? 1 : 0;
	case RF_H1_SLINE:
		return d->sub == RF_H1_SL_REASON ? 2 : 0;
	case RF_H1_HEAD:
	case RF_H1_TRAILERS:
		return d->sub == RF_H1_LS_OTHER ? 3 : 0;
	case RF_H1_CHUNK_LINE:
		return d->sub == RF_H1_CS_EXT ? 4 : 0;
	}
	return 0;
}

/*
 * How many bytes from p (< have) continue the run rf_h1_run found, at most
 * RF_H1_RUN and never past the count where the head (or chunk line) would be
 * too long: the byte-wise step then gives up at the same byte as it would.
 */
static __always_inline __u32 rf_h1_skip(struct rf_h1 *d, const __u8 *buf, __u32 base, __u32 p, __u32 have)
{
	int run = rf_h1_run(d);
	__u32 lim = have - p, room, j;

	room = run == 4 ? RF_H1_MAX_CHUNK_LINE : RF_H1_MAX_HEAD;
	room = d->head < room ? room - d->head : 0;
	if (lim > room)
		lim = room;
	for (j = 0; j < RF_H1_RUN; j++) {
		__u8 c;

		if (j >= lim)
			break;
		c = RF_H1_BYTE(buf, p + j - base);
		if (run == 1 ? (c <= ' ' || c == 0x7f) : (c == '\n' || ((run == 2 || run == 4) && c == '\r')))
			break;
	}
	return j;
}

static __always_inline int rf_h1_is_ver(const __u8 *buf, __u32 i)
{
	int bad = 0;

	for (int j = 0; j < 7; j++)
		bad |= RF_H1_BYTE(buf, i + j) != RF_H1_VER(j);
	return !bad && RF_H1_BYTE(buf, i + 7) >= '0' && RF_H1_BYTE(buf, i + 7) <= '9';
}

/* Longest line (start line, field line) taken whole in one unit; longer ones go byte by byte and by runs. */
#define RF_H1_LINE 128

/*
 * Non-zero when c is not the literal character l ('a'-'z' or '-') in either
 * case; branch-free (a letter's bit 0x20 is its case: c | 0x20 == l holds for
 * l and its capital only; '-' is compared as it is).
 */
static __always_inline __u8 rf_h1_ci(__u8 c, __u8 l)
{
	return (__u8)((c | (l >= 'a' ? 0x20 : 0)) ^ l);
}

/*
 * Offset (< RF_H1_LINE) of the first LF in buf[i, i + room); RF_H1_LINE when
 * there is none in the first min(room, RF_H1_LINE) bytes. Eight bytes a
 * step (design §4: ~0.4 ns a byte against ~2 byte-wise): x ^ 0x0a.. has a
 * zero byte where x has an LF, and (t - 0x01..) & ~t & 0x80.. flags the
 * lowest zero byte exactly (a borrow only flags bytes above a zero one).
 * Bytes past room are read (RF_H1_U64 stays in the buffer) but an LF there
 * is not one of the window's.
 */
static __always_inline __u32 rf_h1_find_lf(const __u8 *buf, __u32 i, __u32 room)
{
	__u32 w;

	RF_H1_FOR(w, RF_H1_LINE / 8) {
		__u64 t, z;
		__u32 j;

		if (w * 8 >= room)
			return RF_H1_LINE;
		t = RF_H1_U64(buf, i + w * 8) ^ 0x0a0a0a0a0a0a0a0aULL;
		z = (t - 0x0101010101010101ULL) & ~t & 0x8080808080808080ULL;
		if (!z)
			continue;
		/* the lowest flag's byte: (z & -z) >> 7 is 1 << 8k, and its product with 0x0001..07 has k on top */
		j = w * 8 + (__u32)((((z & -z) >> 7) * 0x0001020304050607ULL) >> 56);
		return j < room ? j : RF_H1_LINE;
	}
	return RF_H1_LINE;
}

/*
 * A field value [i + from, i + to) of the form OWS digits OWS [CR] (1 to 15
 * digits, no other CR): its value and digit count, or 0 digits when it has
 * another form (the byte-wise machine then reads it).
 */
static __always_inline __u32 rf_h1_cl_value(const __u8 *buf, __u32 i, __u32 from, __u32 to, __u64 *val)
{
	__u32 k = 0, j, at = 0; /* at: 0 before the digits, 1 in them, 2 after */
	__u64 v = 0;

	if (to > from && RF_H1_BYTE(buf, i + to - 1) == '\r')
		to--;
	RF_H1_FOR(j, RF_H1_LINE) {
		__u8 c;

		if (from + j >= to)
			break;
		c = RF_H1_BYTE(buf, i + from + j);
		if (c >= '0' && c <= '9' && at < 2) {
			if (++k > 15)
				return 0;
			v = v * 10 + (c - '0');
			at = 1;
		} else if (rf_h1_ows(c)) {
			if (at == 1)
				at = 2;
		} else {
			return 0;
		}
	}
	*val = v;
	return k;
}

/* Is [i + from, i + to) OWS "chunked" (any case) OWS [CR]? */
static __always_inline int rf_h1_te_chunked(const __u8 *buf, __u32 i, __u32 from, __u32 to)
{
	__u32 j, k = 0, at = 0; /* at: 0 before the coding, 1 in it, 2 after */

	if (to > from && RF_H1_BYTE(buf, i + to - 1) == '\r')
		to--;
	RF_H1_FOR(j, RF_H1_LINE) {
		__u8 c;

		if (from + j >= to)
			break;
		c = RF_H1_BYTE(buf, i + from + j);
		if (rf_h1_ows(c)) {
			if (at == 1)
				at = 2;
		} else if (at < 2 && k < 7 && rf_h1_lower(c) == RF_H1_CHK(k)) {
			k++;
			at = 1;
		} else {
			return 0;
		}
	}
	return k == 7;
}

/*
 * A whole field line at LS_START (its LF in the window, not past the head
 * limit) in one unit: a line that is not Content-Length or Transfer-Encoding
 * is skipped to its LF; those two take their name, and their value too when
 * it has the common form (digits; "chunked"). The state afterwards is the
 * one the byte-wise steps leave, but for the name matcher's scratch (k and
 * the MCL/MTE flags after a line of another field: LS_START sets them anew).
 */
static __always_inline __u32 rf_h1_fast_field(struct rf_h1 *d, const __u8 *buf, __u32 i, __u32 room, int *ev)
{
	__u8 c0 = RF_H1_BYTE(buf, i);
	__u32 lf, j;
	int bad;

	if (c0 == '\r') {
		/* the empty line that ends the head */
		if (room < 2 || RF_H1_BYTE(buf, i + 1) != '\n' || d->head + 2 > RF_H1_MAX_HEAD)
			return 0;
		d->head += 2;
		d->sub = RF_H1_LS_CR;
		*ev = RF_H1_EV_HEAD;
		return 2;
	}
	if (c0 == '\n')
		return 0;
	lf = rf_h1_find_lf(buf, i, room);
	if (lf >= RF_H1_LINE || d->head + lf + 1 > RF_H1_MAX_HEAD)
		return 0;
	/* the names are compared up to the LF at most: bytes past it are never what decides */
	if (lf >= 15) {
		bad = RF_H1_BYTE(buf, i + 14) != ':';
		for (j = 0; j < 14; j++)
			bad |= rf_h1_ci(RF_H1_BYTE(buf, i + j), RF_H1_CL(j));
		if (!bad) {
			__u64 v = 0;
			__u32 k = rf_h1_cl_value(buf, i, 15, lf, &v);

			d->flags = (d->flags & ~RF_H1F_MTE) | RF_H1F_MCL;
			if (!k) {
				d->k = 14;
				d->sub = RF_H1_LS_CL_PRE;
				d->head += 15;
				return 15;
			}
			d->val = v;
			d->k = k;
			rf_h1_cl_elem(d, 0);
			d->sub = RF_H1_LS_START;
			d->head += lf + 1;
			return lf + 1;
		}
	}
	if (lf >= 18) {
		bad = RF_H1_BYTE(buf, i + 17) != ':';
		for (j = 0; j < 17; j++)
			bad |= rf_h1_ci(RF_H1_BYTE(buf, i + j), RF_H1_TE(j));
		if (!bad) {
			d->flags = (d->flags & ~(RF_H1F_MCL | RF_H1F_TOKNE | RF_H1F_TOKBAD)) | RF_H1F_MTE | RF_H1F_TE;
			if (!rf_h1_te_chunked(buf, i, 18, lf)) {
				d->k = 17;
				d->sub = RF_H1_LS_TE_PRE;
				d->head += 18;
				return 18;
			}
			d->flags |= RF_H1F_CHUNKED;
			d->k = 7;
			d->sub = RF_H1_LS_START;
			d->head += lf + 1;
			return lf + 1;
		}
	}
	d->flags &= ~(RF_H1F_MCL | RF_H1F_MTE);
	d->sub = RF_H1_LS_START;
	d->head += lf + 1;
	return lf + 1;
}

/*
 * A whole request line at START ("METHOD SP target SP HTTP/1.x" CRLF or LF,
 * a method the gate knows, all in the window and in RF_H1_LINE bytes) in one
 * unit; 0 for anything else, which the byte-wise steps then read (and give
 * up on where they must).
 */
static __always_inline __u32 rf_h1_fast_rline(struct rf_h1 *d, const __u8 *buf, __u32 i, __u32 room, __u64 ts)
{
	__u64 v = 0;
	__u32 j, t, u, e, len;
	__u8 m, c;

	for (j = 0; j < 10; j++) {
		if (j >= room)
			return 0;
		c = RF_H1_BYTE(buf, i + j);
		if (c == ' ')
			break;
		if (c < 'A' || c > 'Z')
			return 0;
		v = (v << 5) | RF_H1_L(c);
	}
	if (j == 0 || j >= 10)
		return 0;
	m = rf_h1_method_of(v);
	if (m == RF_H1_M_NONE)
		return 0;
	t = RF_H1_LINE;
	RF_H1_FOR(u, RF_H1_LINE) {
		if (j + 1 + u >= room)
			return 0;
		c = RF_H1_BYTE(buf, i + j + 1 + u);
		if (c == ' ') {
			t = j + 1 + u;
			break;
		}
		if (c <= ' ' || c == 0x7f)
			return 0;
	}
	if (t == j + 1 || t >= RF_H1_LINE || room < t + 10 || !rf_h1_is_ver(buf, i + t + 1))
		return 0;
	e = t + 9;
	if (RF_H1_BYTE(buf, i + e) == '\n')
		len = e + 1;
	else if (RF_H1_BYTE(buf, i + e) == '\r' && room > e + 1 && RF_H1_BYTE(buf, i + e + 1) == '\n')
		len = e + 2;
	else
		return 0;
	d->body = 0;
	d->val = v;
	d->clen = 0;
	d->left = 0;
	d->head = len;
	d->status = 0;
	d->k = 8;
	d->flags = 0;
	d->method = m;
	d->first_ns = ts;
	d->state = RF_H1_HEAD;
	d->sub = RF_H1_LS_START;
	return len;
}

/*
 * Tokens and lines every message has, taken in one unit when the window
 * holds them whole (the state afterwards is the byte-wise one, which the
 * split tests hold it to): a status line (the whole line, or its
 * "HTTP/1.x NNN"), a request line, a request line's "HTTP/1.x", a field line
 * (rf_h1_fast_field), a "Content-Length:" name, a chunk-size line of digits,
 * the CRLF after chunk data, the empty line that ends the trailers. Every
 * path reads only bytes it has checked are in the window (i + room).
 * Returns the bytes taken (0: none) and sets *ev.
 */
static __always_inline __u32 rf_h1_fast(struct rf_h1 *d, const __u8 *buf, __u32 i, __u32 room, int resp,
					__u64 ts, int *ev)
{
	*ev = RF_H1_EV_NONE;
	if (d->state == RF_H1_HEAD && d->sub == RF_H1_LS_START)
		return rf_h1_fast_field(d, buf, i, room, ev);
	if (d->state == RF_H1_CHUNK_END && d->sub == 0) {
		if (room < 2 || RF_H1_BYTE(buf, i) != '\r' || RF_H1_BYTE(buf, i + 1) != '\n')
			return 0;
		d->state = RF_H1_CHUNK_LINE;
		d->sub = RF_H1_CS_DIG;
		d->val = 0;
		d->k = 0;
		d->head = 0;
		return 2;
	}
	if (d->state == RF_H1_TRAILERS && d->sub == RF_H1_LS_START) {
		if (room < 2 || RF_H1_BYTE(buf, i) != '\r' || RF_H1_BYTE(buf, i + 1) != '\n' ||
		    d->head + 2 > RF_H1_MAX_HEAD)
			return 0;
		d->head += 2;
		d->sub = RF_H1_LS_CR;
		*ev = rf_h1_end(d, 0);
		return 2;
	}
	if (d->state == RF_H1_CHUNK_LINE && d->sub == RF_H1_CS_DIG && d->k == 0 && d->head == 0) {
		/* hex digits, then CRLF or LF: no extension, no whitespace */
		__u64 v = 0;
		__u32 j;

		for (j = 0; j < 13; j++) {
			__u8 c, h;

			if (j >= room)
				return 0;
			c = RF_H1_BYTE(buf, i + j);
			h = c >= '0' && c <= '9' ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : 0xff;
			if (h == 0xff)
				break;
			v = (v << 4) | h;
		}
		if (j == 0 || j > 12 || j >= room)
			return 0;
		d->k = j;
		if (RF_H1_BYTE(buf, i + j) == '\n') {
			j += 1;
		} else if (RF_H1_BYTE(buf, i + j) == '\r' && j + 1 < room && RF_H1_BYTE(buf, i + j + 1) == '\n') {
			d->sub = RF_H1_CS_CR;
			j += 2;
		} else {
			d->k = 0; /* as it was: the byte-wise steps read this line */
			return 0;
		}
		d->val = v;
		d->head = j;
		if (!v) {
			d->state = RF_H1_TRAILERS;
			d->sub = RF_H1_LS_START;
			d->head = 0;
		} else {
			d->state = RF_H1_CHUNK_DATA;
			d->left = v;
			d->body += v;
		}
		return j;
	}
	if (!resp && d->state == RF_H1_START) {
		__u32 j = rf_h1_fast_rline(d, buf, i, room, ts);

		if (j)
			*ev = RF_H1_EV_START;
		return j;
	}
	if (room < 14)
		return 0;
	if (resp && d->state == RF_H1_START) {
		__u8 a = RF_H1_BYTE(buf, i + 9), b = RF_H1_BYTE(buf, i + 10), c = RF_H1_BYTE(buf, i + 11), r;
		__u32 lf, j, len = 12;

		if (!rf_h1_is_ver(buf, i) || RF_H1_BYTE(buf, i + 8) != ' ' || a < '1' || a > '9' ||
		    b < '0' || b > '9' || c < '0' || c > '9')
			return 0;
		d->body = 0;
		d->val = 0;
		d->clen = 0;
		d->left = 0;
		d->flags = 0;
		d->method = RF_H1_M_NONE;
		d->first_ns = ts;
		d->state = RF_H1_SLINE;
		d->sub = RF_H1_SL_AFTER;
		d->k = 3;
		d->status = (a - '0') * 100 + (b - '0') * 10 + (c - '0');
		*ev = RF_H1_EV_START;
		/* the rest of the line: LF, CRLF, or SP, a reason without CR, CRLF or LF */
		lf = rf_h1_find_lf(buf, i + 12, room - 12);
		r = RF_H1_BYTE(buf, i + 12);
		if (lf < RF_H1_LINE && (lf == 0 || (r == '\r' && lf == 1) || r == ' ')) {
			int bad = 0;

			RF_H1_FOR(j, RF_H1_LINE) {
				if (j + 2 >= lf)
					break;
				bad |= RF_H1_BYTE(buf, i + 13 + j) == '\r';
			}
			if (!bad) {
				len = 12 + lf + 1;
				d->state = RF_H1_HEAD;
				d->sub = RF_H1_LS_START;
			}
		}
		d->head = len;
		return len;
	}
	if (d->state == RF_H1_RLINE && d->sub == RF_H1_RL_VER && d->k == 0 && d->head + 8 <= RF_H1_MAX_HEAD) {
		if (!rf_h1_is_ver(buf, i))
			return 0;
		d->sub = RF_H1_RL_EOL;
		d->k = 8;
		d->head += 8;
		return 8;
	}
	if (d->state == RF_H1_HEAD && d->sub == RF_H1_LS_NAME && d->k == 1 && (d->flags & RF_H1F_MCL) &&
	    d->head + 14 <= RF_H1_MAX_HEAD) {
		int bad = 0;

		for (int j = 1; j < 14; j++)
			bad |= rf_h1_lower(RF_H1_BYTE(buf, i + j - 1)) != RF_H1_CL(j);
		if (bad || RF_H1_BYTE(buf, i + 13) != ':')
			return 0;
		d->flags &= ~RF_H1F_MTE;
		d->k = 14;
		d->sub = RF_H1_LS_CL_PRE;
		d->head += 14;
		return 14;
	}
	return 0;
}

/*
 * One unit of work on a syscall's bytes: n bytes moved, bytes [base, have)
 * of them readable in buf (the copied window: byte p at buf[p - base]), *pos
 * the next one. A body is skipped in one step (never read); anything else is
 * read one byte a step, or a run at a time. Returns an event; *pos advances
 * by at least one byte unless *pos >= n. A byte outside the window that
 * would have to be read loses framing.
 */
static __always_inline int rf_h1_unit(struct rf_h1 *d, const __u8 *buf, __u32 base, __u32 *pos, __u32 n,
				       __u32 have, int resp, __u64 ts)
{
	__u32 p = *pos, avail;
	int ev;

	if (p >= n)
		return RF_H1_EV_NONE;
	avail = n - p;
	switch (d->state) {
	case RF_H1_BODY:
	case RF_H1_CHUNK_DATA:
		if (d->left > avail) {
			d->left -= avail;
			*pos = n;
			d->last_ns = ts;
			return RF_H1_EV_NONE;
		}
		*pos = p + (__u32)d->left;
		d->left = 0;
		d->last_ns = ts;
		if (d->state == RF_H1_BODY)
			return rf_h1_end(d, 0);
		d->state = RF_H1_CHUNK_END;
		d->sub = 0;
		return RF_H1_EV_NONE;
	case RF_H1_CLOSE:
		d->body += avail;
		d->last_ns = ts;
		*pos = n;
		return RF_H1_EV_NONE;
	case RF_H1_SEEK:
	case RF_H1_TUNNEL:
		*pos = n;
		return RF_H1_EV_NONE;
	}
	if (p >= have || p < base) {
		*pos = n;
		return rf_h1_giveup(d, RF_H1_WHY_BAD_FRAMING);
	}
	/* RF_H1_BYTEWISE: the host test's reference build, every unit a byte or a run (test/unit/l7-h1-units.test.ts) */
#ifndef RF_H1_BYTEWISE
	{
		__u32 j = rf_h1_fast(d, buf, p - base, have - p, resp, ts, &ev);

		if (j) {
			*pos = p + j;
			d->last_ns = ts;
			return ev;
		}
	}
#endif
	/* inside a run of bytes that only end at a delimiter: skip the run in one unit */
	if (rf_h1_run(d)) {
		__u32 j = rf_h1_skip(d, buf, base, p, have);

		if (j) {
			d->head += j;
			*pos = p + j;
			d->last_ns = ts;
			return RF_H1_EV_NONE;
		}
	}
	*pos = p + 1;
	ev = rf_h1_byte(d, RF_H1_BYTE(buf, p - base), resp, ts);
	if (d->state != RF_H1_START && d->state != RF_H1_SEEK)
		d->last_ns = ts;
	else if (ev == RF_H1_EV_END)
		d->last_ns = ts;
	return ev;
}

/*
 * Do the first bytes h[0..16) (zero-padded) of a syscall start a message of
 * this direction? A response: 'HTTP/1.'; a request: a known method and SP.
 * rf_h1_resync: then a direction in SEEK starts again from that byte.
 */
static __always_inline int rf_h1_sig(const __u8 *h, int resp)
{
	__u64 v = 0;
	int i, bad = 0, sp = 0;

	if (resp) {
		for (i = 0; i < 7; i++)
			bad |= h[i] != RF_H1_VER(i);
		return !bad;
	}
	/* no early exit: a fixed 10-step loop the compiler unrolls */
	for (i = 0; i < 10; i++) {
		if (sp)
			continue;
		if (h[i] == ' ')
			sp = i;
		else if (h[i] < 'A' || h[i] > 'Z')
			bad = 1;
		else
			v = (v << 5) | RF_H1_L(h[i]);
	}
	return !bad && sp && rf_h1_method_of(v) != RF_H1_M_NONE;
}

static __always_inline int rf_h1_resync(struct rf_h1 *d, const __u8 *h, int resp)
{
	if (d->state != RF_H1_SEEK || !rf_h1_sig(h, resp))
		return 0;
	d->state = RF_H1_START;
	return 1;
}

/* End of the connection: a response read until close is complete (END); others are cut. */
static __always_inline int rf_h1_eof(struct rf_h1 *d)
{
	if (d->state == RF_H1_CLOSE)
		return rf_h1_end(d, 1);
	return RF_H1_EV_NONE;
}

#endif /* RINGFLOW_L7_H1_H */
