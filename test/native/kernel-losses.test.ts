/**
 * Session.mapCounters against the real kernel (root): the per-reason counters
 * of tcp.bpf.c (rf_tcp_unattributed) and block.bpf.c (rf_block_lost), per-CPU
 * slots summed, equal to what bpftool reads; kept after stop(); and what
 * collector/kernel-losses.ts makes of them.
 *
 * Unattributed TCP losses are made as test/integration/tcp-owner.test.ts makes
 * them: a socket connecting before the objects are loaded has no known owner;
 * in a namespace of its own, a token bucket on lo smaller than any segment
 * drops every SYN and TCP retransmits it; --pid (any task filter) leaves those
 * records out and counts them.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { Session } from '../../native/index.ts';
import { encodeSettings } from '../../collector/signals/settings.ts';
import { objectPath } from '../../collector/signals/registry.ts';
import { ensureTracefs } from '../../collector/preflight.ts';
import { kernelLossDeltas, readKernelLosses } from '../../collector/kernel-losses.ts';
import { ROOT, bpftoolSums, mapIdsNamed, sleep } from './helpers.ts';

const NS = `rf-klosses-${process.pid}`;
const DPORT = 20000 + ((process.pid + 7) % 40000);
const CONNECT = `
import socket, sys, time
sys.stdin.readline()
s = socket.socket(); s.setblocking(False)
s.connect_ex(('127.0.0.1', int(sys.argv[1])))
time.sleep(float(sys.argv[2]))
`;

before(() => {
  ensureTracefs();
  execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
  execFileSync('ip', ['netns', 'add', NS]);
  execFileSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
  execFileSync('ip', ['netns', 'exec', NS, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'tbf', 'rate', '1mbit', 'burst', '32', 'mtu', '32', 'limit', '10000']);
});
after(() => execFileSync('ip', ['netns', 'del', NS], { stdio: 'ignore' }));

test('mapCounters sums the per-CPU reason counters as bpftool does, keeps them after stop, and kernel-losses names them', { timeout: 120_000 }, async (t) => {
  const child = spawn('ip', ['netns', 'exec', NS, 'python3', '-c', CONNECT, String(DPORT), '3'], { stdio: ['pipe', 'ignore', 'inherit'] });
  t.after(() => child.kill('SIGKILL'));
  await once(child, 'spawn');
  const exited = once(child, 'exit');
  child.stdin!.end('go\n');
  await sleep(500); // connect() happens before the objects are loaded: its socket has no known owner

  const tcpBefore = mapIdsNamed('rf_tcp_unattrib');
  const blockBefore = mapIdsNamed('rf_block_lost');
  const session = new Session({ ringBytes: 1 << 20 });
  t.after(() => session.stop());
  const settings = encodeSettings({ selfTgid: process.pid, pid: child.pid! });
  session.addObject(objectPath('tcp'), settings);
  session.addObject(objectPath('block'), settings);
  session.start(() => {});
  assert.equal(session.mapCounters('rf_no_such_map'), null, 'a map no object has: null');
  const first = readKernelLosses(session, { taskFiltered: true });
  await exited;

  const tcp = session.mapCounters('rf_tcp_unattributed');
  const block = session.mapCounters('rf_block_lost');
  assert.deepEqual(tcp, bpftoolSums('rf_tcp_unattrib', tcpBefore));
  assert.deepEqual(block, bpftoolSums('rf_block_lost', blockBefore));
  assert.equal(tcp!.length, 2);
  assert.equal(block!.length, 4);
  assert.ok(tcp![0]! > 0n, `the retransmits of the unowned socket are counted: ${tcp!.join(', ')}`);

  const { deltas } = kernelLossDeltas(first, readKernelLosses(session, { taskFiltered: true }));
  assert.ok((deltas.tcp_retransmit_unattributed ?? 0) > 0, JSON.stringify(deltas));

  await session.stop();
  assert.deepEqual(session.mapCounters('rf_tcp_unattributed'), tcp, 'last values after stop');
  assert.equal(session.mapCounters('rf_block_lost')!.length, 4);
});
