/*
 * Host driver for bpf/l7_h1.h's whole-line units (cc -DRF_HOST, and once
 * more with -DRF_H1_BYTEWISE for the byte-wise reference):
 * test/unit/l7-h1-units.test.ts feeds both builds the same syscalls and
 * requires the same events and the same framing state after every syscall,
 * and counts the units (bpf_loop steps in BPF) a message takes.
 *
 * stdin, one command a line:
 *   C                 a new connection (both directions reset)
 *   Q|S <ts> <hex>    bytes of one syscall on the requests | responses side
 * stdout, per syscall: one line per event, then the side's state and the
 * units the syscall took:
 *   Q|S EV <ev> <seq> <status, -1 at START> <body>
 *   Q|S ST <state> <sub> <k> <seq> <left> <body> <val> <clen> <flags> <method> <status> <head> <first> <last> <why> UNITS <n>
 * (k and the name-matcher flags only where the byte-wise machine still
 * reads them: a field line's start sets them anew, so after a whole field
 * line they are not compared; see rf_h1_fast_field).
 */
#define RF_HOST 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../bpf/l7_h1.h"

static struct rf_h1 dir[2];
static __u8 buf[1 << 16];

static int hexval(int c)
{
	return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Are k and MCL/MTE still read by the byte-wise machine in this state (a field line's start sets them anew)? */
static int scratch_live(const struct rf_h1 *d)
{
	if (d->state == RF_H1_HEAD || d->state == RF_H1_TRAILERS)
		return d->sub != RF_H1_LS_START && d->sub != RF_H1_LS_CR && d->sub != RF_H1_LS_OTHER;
	return d->state == RF_H1_RLINE || d->state == RF_H1_SLINE || d->state == RF_H1_CHUNK_LINE;
}

static void feed(int resp, __u64 ts, const __u8 *b, __u32 n)
{
	struct rf_h1 *d = &dir[resp];
	const char *side = resp ? "S" : "Q";
	__u32 pos = 0, units = 0;
	int live;

	while (pos < n) {
		int ev = rf_h1_unit(d, b, 0, &pos, n, n, resp, ts);

		units++;
		if (ev == RF_H1_EV_HEAD)
			ev = rf_h1_frame(d, resp, resp ? RF_H1_M_NONE : d->method);
		/* at START the status is not read yet byte-wise (a whole status line has it): not compared */
		if (ev != RF_H1_EV_NONE)
			printf("%s EV %d %u %d %llu\n", side, ev, d->seq, ev == RF_H1_EV_START ? -1 : d->status,
			       (unsigned long long)d->body);
	}
	live = scratch_live(d);
	printf("%s ST %u %d %d %u %llu %llu %llu %llu %u %u %u %u %llu %llu %u UNITS %u\n", side, d->state,
	       d->sub, live ? d->k : -1, d->seq, (unsigned long long)d->left,
	       (unsigned long long)d->body, (unsigned long long)d->val, (unsigned long long)d->clen,
	       d->flags & (live ? 0xff : ~(RF_H1F_MCL | RF_H1F_MTE) & 0xff), d->method, d->status, d->head,
	       (unsigned long long)d->first_ns, (unsigned long long)d->last_ns, d->why, units);
}

int main(void)
{
	static char line[1 << 18];

	while (fgets(line, sizeof(line), stdin)) {
		char *p = line;
		int resp;
		__u64 ts;
		__u32 n = 0;

		if (line[0] == 'C') {
			memset(dir, 0, sizeof(dir));
			continue;
		}
		if (line[0] != 'Q' && line[0] != 'S')
			continue;
		resp = line[0] == 'S';
		ts = strtoull(p + 2, &p, 10);
		while (*p == ' ')
			p++;
		while (p[0] && p[1] && p[0] != '\n' && n < sizeof(buf))
			buf[n++] = (__u8)(hexval(p[0]) << 4 | hexval(p[1])), p += 2;
		feed(resp, ts, buf, n);
	}
	return 0;
}
