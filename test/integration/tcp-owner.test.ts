/**
 * tcp.retransmit and tcp.drop belong to the socket's owner, not to whatever
 * task softirq or a timer interrupted: `--pid` and `--comm` keep exactly the
 * owner's retransmits and drops, and the records carry the owner's pid and comm.
 *
 * Real retransmits and drops without netem or iptables: in a network namespace
 * of its own, a token bucket on lo whose largest packet (32 bytes) is smaller
 * than any TCP segment drops every SYN (kfree_skb, QDISC_DROP, skb->sk = the
 * connecting socket), and TCP retransmits it from its timer.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { rootOrSkip, runCli, sleep } from '../support/integration.ts';
import { Session, forEachRecord } from '../../native/index.ts';
import { encodeSettings } from '../../collector/signals/settings.ts';
import { objectPath } from '../../collector/signals/registry.ts';
import { ensureTracefs } from '../../collector/preflight.ts';

const NS = `rf-tcp-owner-${process.pid}`;
const DPORT = 20000 + (process.pid % 40000);

/** Parked until a line on stdin; then names itself, connects (never answered) and waits. */
const DRIVER = `
import ctypes, socket, sys, time
sys.stdin.readline()
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME: the comm --comm sees
s = socket.socket(); s.setblocking(False)
s.connect_ex(('127.0.0.1', int(sys.argv[2])))
print(s.getsockname()[1], flush=True)
time.sleep(float(sys.argv[3]))
`;

interface Owner { pid: number; comm: string; sport: number }

async function connectors(comms: string[], seconds: number) {
  const kids = comms.map((comm) => {
    // ip netns exec execs the command: the pid we spawn is python's
    const child = spawn('ip', ['netns', 'exec', NS, 'python3', '-c', DRIVER, comm, String(DPORT), String(seconds)],
      { stdio: ['pipe', 'pipe', 'inherit'] });
    return { child, comm };
  });
  await Promise.all(kids.map((k) => once(k.child, 'spawn')));
  return {
    pids: kids.map((k) => k.child.pid!),
    /** Starts all; resolves with each one's owner once all have exited. */
    async go(): Promise<Owner[]> {
      const outs = kids.map((k) => {
        let out = '';
        k.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        return once(k.child, 'exit').then(([code]) => {
          assert.equal(code, 0, `${k.comm} exited ${code}`);
          return { pid: k.child.pid!, comm: k.comm, sport: Number(out.trim()) };
        });
      });
      for (const k of kids) k.child.stdin!.end('go\n');
      return Promise.all(outs);
    },
  };
}

type Rec = Record<string, unknown>;

/** Runs the collector with `filters` while two connectors retransmit and drop; their records by owner. */
async function observe(filters: (owners: { pids: number[] }) => string[]): Promise<{ owners: Owner[]; recs: Rec[]; stderr: string }> {
  const c = await connectors(['rfown-x', 'rfown-y'], 3);
  const cli = runCli(['collect', '--stdout', '--signals', 'tcp', ...filters(c)]);
  await cli.waitFor(/collecting tcp/);
  const owners = await c.go();
  await sleep(500);
  cli.child.kill('SIGINT');
  assert.equal(await cli.exit, 0, cli.stderr());
  const recs = cli.stdout().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Rec)
    .filter((r) => (r.event === 'ringflow.tcp.retransmit.v1' || r.event === 'ringflow.tcp.drop.v1') && r.dport === DPORT);
  return { owners, recs, stderr: cli.stderr() };
}

const of = (recs: Rec[], o: Owner, event: string) => recs.filter((r) => r.sport === o.sport && r.event === event);

before(() => {
  if (process.getuid?.() !== 0) return;
  execFileSync('ip', ['netns', 'add', NS]);
  execFileSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
  execFileSync('ip', ['netns', 'exec', NS, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', '1mbit', 'burst', '32', 'mtu', '32', 'limit', '10000']);
});
after(() => {
  if (process.getuid?.() === 0) execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
});

test('--pid keeps the retransmits and drops of that process\'s socket and no other\'s', { timeout: 120_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const { owners: [x, y], recs } = await observe((c) => ['--pid', String(c.pids[0])]);
  assert.ok(of(recs, x!, 'ringflow.tcp.retransmit.v1').length >= 1, `retransmits of ${x!.comm}: ${JSON.stringify(recs)}`);
  assert.ok(of(recs, x!, 'ringflow.tcp.drop.v1').length >= 1, `drops of ${x!.comm}`);
  for (const r of recs.filter((r) => r.sport === x!.sport)) {
    assert.equal(r.tgid, x!.pid, 'the owner, not the interrupted task');
    assert.equal(r.comm, x!.comm);
  }
  assert.deepEqual(recs.filter((r) => r.sport === y!.sport), [], `nothing of the other process (${y!.comm})`);
});

test('--comm keeps the owner\'s retransmits and drops by the owner\'s command name', { timeout: 120_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const { owners: [x, y], recs } = await observe(() => ['--comm', 'rfown-y']);
  assert.ok(of(recs, y!, 'ringflow.tcp.retransmit.v1').length >= 1, `retransmits of ${y!.comm}`);
  assert.ok(of(recs, y!, 'ringflow.tcp.drop.v1').length >= 1, `drops of ${y!.comm}`);
  assert.deepEqual(recs.filter((r) => r.sport === x!.sport), [], `nothing of ${x!.comm}`);
});

test('unfiltered, every retransmit and drop of a known socket carries its owner', { timeout: 120_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const { owners, recs } = await observe(() => []);
  for (const o of owners) {
    const mine = recs.filter((r) => r.sport === o.sport);
    assert.ok(of(recs, o, 'ringflow.tcp.retransmit.v1').length >= 1, `retransmits of ${o.comm}`);
    for (const r of mine) assert.deepEqual([r.tgid, r.comm], [o.pid, o.comm], `${String(r.event)} of ${o.comm}`);
  }
});

/** Per-CPU __u64 counters of one BPF array map, summed per index. */
function perCpuSums(id: number): bigint[] {
  const out = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'id', String(id)], { encoding: 'utf8' })) as
    { formatted: { key: number; values: { value: number }[] } }[];
  const sums: bigint[] = [];
  for (const e of out) sums[e.formatted.key] = e.formatted.values.reduce((a, v) => a + BigInt(v.value), 0n);
  return sums;
}

const mapIds = (name: string): number[] =>
  (JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show'], { encoding: 'utf8' })) as { id: number; name: string }[])
    .filter((m) => m.name === name).map((m) => m.id);

test('a socket set up before the collector started has no known owner: left out under --pid, and counted', { timeout: 120_000 }, async (t) => {
  if (!rootOrSkip(t)) return;
  const c = await connectors(['rfown-early'], 3);
  const done = c.go();
  await sleep(500); // connect() (SYN_SENT, in its own context) happens before anything is attached
  ensureTracefs();
  const before = new Set(mapIds('rf_tcp_unattrib')); // BPF map names are cut at 15 characters
  const session = new Session();
  t.after(() => session.stop());
  session.addObject(objectPath('tcp'), encodeSettings({ selfTgid: process.pid, pid: c.pids[0] }));
  const ours = mapIds('rf_tcp_unattrib').filter((id) => !before.has(id));
  let seen = 0;
  session.start((batch) => forEachRecord(batch, (off) => {
    if (batch[off] === 6 || batch[off] === 7) seen++; // RF_EV_TCP_RETRANSMIT, RF_EV_TCP_DROP
  }));
  await done;
  const counted = ours.length === 1 ? perCpuSums(ours[0]!) : [];
  await session.stop();
  assert.equal(seen, 0, 'nothing passes --pid without a known owner');
  assert.equal(ours.length, 1, 'one new rf_tcp_unattributed map (ours)');
  assert.ok((counted[0] ?? 0n) > 0n, `its retransmits are counted as unattributed: ${counted.join(', ')}`);
});
