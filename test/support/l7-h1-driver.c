/*
 * Host driver for bpf/l7_h1.h (cc -DRF_HOST): test/unit/l7-h1-kernel.test.ts
 * writes conversations on stdin and compares what this prints with what
 * collector/l7/http1.ts yields for the same bytes. It pairs nothing: like
 * l7.bpf.c it hands the responses side the method of the request with the
 * same ordinal (HEAD and CONNECT change a response's framing).
 *
 * stdin, one command a line:
 *   C                 a new connection (both directions and the method log reset)
 *   Q|S <ts> <hex>    bytes of one syscall on the requests | responses side
 *   QE|SE <ts>        that side ended (EOF)
 *   .                 print "." (end of a case)
 * stdout, one event a line:
 *   Q|S END <seq> <status> <body> <first_ts> <last_ts>
 *   Q|S GIVEUP <why>   (why: rf_l7_parse_counter index)
 *   Q|S RESYNC
 */
#define RF_HOST 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../../bpf/l7_h1.h"

#define MAX_METHODS 4096

static struct rf_h1 dir[2];
static __u8 methods[MAX_METHODS];
static __u8 buf[1 << 20];

static int hexval(int c)
{
	return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

static void feed(int resp, __u64 ts, const __u8 *b, __u32 n)
{
	struct rf_h1 *d = &dir[resp];
	const char *side = resp ? "S" : "Q";
	__u8 h[16] = {0};
	__u32 pos = 0;

	memcpy(h, b, n < 16 ? n : 16);
	if (rf_h1_resync(d, h, resp))
		printf("%s RESYNC\n", side);
	while (pos < n) {
		int ev = rf_h1_unit(d, b, 0, &pos, n, n, resp, ts);

		if (ev == RF_H1_EV_HEAD) {
			__u32 seq = d->seq;
			__u8 m = resp ? (seq < MAX_METHODS ? methods[seq] : 0) : d->method;

			if (!resp && seq < MAX_METHODS)
				methods[seq] = m;
			ev = rf_h1_frame(d, resp, m);
		}
		if (ev == RF_H1_EV_END)
			printf("%s END %u %u %llu %llu %llu\n", side, d->seq - 1, d->status, (unsigned long long)d->body,
			       (unsigned long long)d->first_ns, (unsigned long long)d->last_ns);
		else if (ev == RF_H1_EV_GIVEUP)
			printf("%s GIVEUP %u\n", side, d->why);
	}
}

int main(void)
{
	static char line[(1 << 21) + 64];

	while (fgets(line, sizeof(line), stdin)) {
		char *p = line;
		int resp;

		if (line[0] == 'C') {
			memset(dir, 0, sizeof(dir));
			memset(methods, 0, sizeof(methods));
			continue;
		}
		if (line[0] == '.') {
			printf(".\n");
			continue;
		}
		resp = line[0] == 'S';
		if (line[1] == 'E') {
			if (rf_h1_eof(&dir[resp]) == RF_H1_EV_END)
				printf("%s END %u %u %llu %llu %llu\n", resp ? "S" : "Q", dir[resp].seq - 1, dir[resp].status,
				       (unsigned long long)dir[resp].body, (unsigned long long)dir[resp].first_ns,
				       (unsigned long long)dir[resp].last_ns);
			continue;
		}
		{
			__u64 ts = strtoull(p + 2, &p, 10);
			__u32 n = 0;

			while (*p == ' ')
				p++;
			while (p[0] && p[1] && p[0] != '\n' && n < sizeof(buf)) {
				buf[n++] = hexval(p[0]) << 4 | hexval(p[1]);
				p += 2;
			}
			feed(resp, ts, buf, n);
		}
	}
	return 0;
}
