/**
 * Shared helpers for integration tests: the test broker, reading a topic to
 * its end, running the real `ringflow` CLI as a child process, and the root
 * requirement (CI runs as root, so these tests always run there).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import kafkajs from '../../kafka/kafkajs.ts';
import { decodeRecord } from '../../schemas/index.ts';
import type { RegisteredSchema } from '../../schemas/index.ts';
import { REPO_ROOT } from '../../collector/signals/registry.ts';
import { startBroker, stopBroker } from '../../cli/kafka.ts';
import { freePort } from '../../cli/daemon.ts';

const { Kafka, logLevel } = kafkajs;

export { REPO_ROOT, freePort };

/** Privileged tests must run in CI; elsewhere, without root, they say why they cannot. */
export function rootOrSkip(t: { skip: (msg: string) => void }): boolean {
  if (process.getuid?.() === 0) return true;
  if (process.env.CI) throw new Error('integration tests need root in CI (CI runs as root)');
  t.skip('needs root (loads BPF programs); run with sudo');
  return false;
}

/** The suite's broker (scripts/test.sh starts it), or one of our own for a lone test file. */
export async function testBrokers(): Promise<{ brokers: string; stop: () => Promise<void> }> {
  if (process.env.RINGFLOW_TEST_BROKERS) return { brokers: process.env.RINGFLOW_TEST_BROKERS, stop: async () => {} };
  return ownBroker();
}

/** A broker in a temporary state dir on free ports. */
export async function ownBroker(): Promise<{ brokers: string; stateDir: string; port: number; controllerPort: number; pid: number; stop: () => Promise<void> }> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-it-kafka-'));
  const port = await freePort();
  let controllerPort = await freePort();
  while (controllerPort === port) controllerPort = await freePort();
  const r = await startBroker({ stateDir, port, controllerPort });
  return {
    brokers: r.brokers,
    pid: r.pid,
    stateDir,
    port,
    controllerPort,
    stop: async () => {
      await stopBroker({ stateDir }).catch(() => {});
      fs.rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

export interface TopicRecord {
  partition: number;
  offset: string;
  key: string;
  schema: RegisteredSchema;
  value: Record<string, unknown>;
}

export interface RawRecord {
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string>;
}

export interface ReadOptions {
  /** Keep only records at or past this offset per partition (uncommittedRecords). */
  from?: ReadonlyMap<number, bigint>;
  /** Stop at these offsets per partition instead of the end offsets at the start of the read. */
  to?: ReadonlyMap<number, bigint>;
  /** Give up after this long, naming the partitions not read to their end (default 60 s). */
  timeoutMs?: number;
  /** Called when the reader's group has joined: lets a test inject a fault mid-read. */
  onGroupJoin?: () => void;
}

/**
 * Every committed record of `topic` from the log start (or `from`) up to the
 * end offsets taken when the read starts; records written later are left out.
 *
 * The end is what ListOffsets answers with read_committed: the last stable
 * offset, i.e. the high watermark unless a transaction is still open. A
 * transactional topic ends in commit markers that no consumer is handed as a
 * message, so a partition is done when the consumer's POSITION reaches its end
 * (kafkajs reports the last offset of every fetched batch, markers and aborted
 * records included, in END_BATCH_PROCESS), not when a message at end - 1 has
 * been seen. There is no "quiet period": a read that stalls (a slow fetch, a
 * partition not yet assigned, a broker paused) waits and, after timeoutMs,
 * fails naming what it did not read; it never returns a partial read.
 */
export async function readTopicRaw(brokers: string, topic: string, opts: ReadOptions = {}): Promise<RawRecord[]> {
  const kafka = new Kafka({ clientId: 'ringflow-test-reader', brokers: [brokers], logLevel: logLevel.NOTHING });
  const groupId = `ringflow-test-${process.pid}-${Date.now()}-${Math.random()}`;
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map<number, bigint>();
  const starts = new Map<number, bigint>();
  try {
    for (const p of await admin.fetchTopicOffsets(topic)) {
      const from = opts.from?.get(p.partition) ?? BigInt(p.low);
      const start = from > BigInt(p.low) ? from : BigInt(p.low);
      const to = opts.to?.get(p.partition);
      const end = to !== undefined && to < BigInt(p.high) ? to : BigInt(p.high);
      if (end > start) {
        ends.set(p.partition, end);
        starts.set(p.partition, start);
      }
    }
  } finally {
    await admin.disconnect();
  }
  // every partition is read from its log start and records before `from` are
  // skipped: test topics are small, and neither admin.setOffsets (5 s per call)
  // nor seek (which can cut a batch that END_BATCH_PROCESS then reports whole) is needed
  const position = new Map<number, bigint>([...ends.keys()].map((p) => [p, 0n]));
  const out: RawRecord[] = [];
  if (ends.size === 0) return out;
  const remaining = new Set(ends.keys());
  // short fetch waits: a fetch that finds nothing new otherwise holds the read for 5 s
  const consumer = kafka.consumer({ groupId, readUncommitted: false, maxWaitTimeInMs: 100 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timeoutMs = opts.timeoutMs ?? 60_000;
      const timer = setTimeout(() => {
        const behind = [...remaining].map((p) => `${p} at ${position.get(p)} of ${ends.get(p)}`).join(', ');
        reject(new Error(`reading ${topic} to its end offsets timed out after ${timeoutMs / 1000} s; partitions not read to the end: ${behind}`));
      }, timeoutMs);
      const advance = (partition: number, next: bigint) => {
        const end = ends.get(partition);
        if (end === undefined || !remaining.has(partition)) return;
        if (next > position.get(partition)!) position.set(partition, next);
        if (position.get(partition)! >= end) {
          remaining.delete(partition);
          if (remaining.size === 0) {
            clearTimeout(timer);
            resolve();
          }
        }
      };
      if (opts.onGroupJoin) consumer.on(consumer.events.GROUP_JOIN, opts.onGroupJoin);
      // the last offset of each fetched batch, control records (commit/abort markers) included
      consumer.on(consumer.events.END_BATCH_PROCESS, (e) => advance(e.payload.partition, BigInt(e.payload.lastOffset) + 1n));
      consumer
        .run({
          autoCommit: false,
          eachMessage: async ({ partition, message }) => {
            const end = ends.get(partition);
            const offset = BigInt(message.offset);
            if (end === undefined || offset >= end) return;
            if (offset < starts.get(partition)!) return advance(partition, offset + 1n);
            out.push({
              partition,
              offset: message.offset,
              key: message.key ?? null,
              value: message.value ?? null,
              headers: Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])),
            });
            advance(partition, BigInt(message.offset) + 1n);
          },
        })
        .catch((err) => {
          clearTimeout(timer);
          reject(err);
        });
    });
  } finally {
    await consumer.disconnect();
  }
  return out.sort((a, b) => a.partition - b.partition || (BigInt(a.offset) < BigInt(b.offset) ? -1 : 1));
}

/**
 * Every record of `topic` up to its current end (readTopicRaw), each decoded
 * with the schema its single-object header names. A record that does not
 * decode throws. A number for `opts` is the quiet period of an earlier version
 * and is ignored: the read always goes to the end offsets.
 */
export async function readTopic(brokers: string, topic: string, opts: ReadOptions | number = {}): Promise<TopicRecord[]> {
  const raw = await readTopicRaw(brokers, topic, typeof opts === 'number' ? {} : opts);
  return raw.map((r) => {
    let decoded: ReturnType<typeof decodeRecord>;
    try {
      decoded = decodeRecord(r.value!);
    } catch (err) {
      throw new Error(`${topic}[${r.partition}]@${r.offset} does not decode: ${(err as Error).message}`);
    }
    return { partition: r.partition, offset: r.offset, key: r.key?.toString() ?? '', schema: decoded.schema, value: decoded.value as Record<string, unknown> };
  });
}

/**
 * The committed records of `topic` past `groupId`'s committed offsets (from
 * the log start where it committed none), up to the end offsets: what that
 * group would be handed if it started now. Empty exactly when a restarted
 * consumer of the group has nothing to send again, which a count of zero
 * after a sleep cannot tell from a consumer that has not joined yet.
 */
export async function uncommittedRecords(brokers: string, groupId: string, topic: string, to?: ReadonlyMap<number, bigint>): Promise<RawRecord[]> {
  const kafka = new Kafka({ clientId: 'ringflow-test-offsets', brokers: [brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const from = new Map<number, bigint>();
  try {
    const [t] = await admin.fetchOffsets({ groupId, topics: [topic] });
    for (const p of t?.partitions ?? []) if (BigInt(p.offset) >= 0n) from.set(p.partition, BigInt(p.offset));
  } finally {
    await admin.disconnect();
  }
  return readTopicRaw(brokers, topic, { from, ...(to ? { to } : {}) });
}

/**
 * Waits until `groupId` has committed every record that `topic` holds now
 * (records written after the call do not count, so a topic that keeps
 * growing does not keep it waiting). Once a consumer group has committed its
 * input, everything it will ever do with that input is done: what a test
 * counts afterwards cannot still change, unlike after a fixed sleep.
 */
export async function waitCommitted(brokers: string, groupId: string, topic: string, timeoutMs = 60_000): Promise<void> {
  const kafka = new Kafka({ clientId: 'ringflow-test-offsets', brokers: [brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  let to: Map<number, bigint>;
  try {
    to = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]));
  } finally {
    await admin.disconnect();
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await uncommittedRecords(brokers, groupId, topic, to);
    if (left.length === 0) return;
    if (Date.now() > deadline) throw new Error(`${groupId} did not commit ${topic} up to ${[...to].map(([p, o]) => `${p}:${o}`).join(' ')} in ${timeoutMs / 1000} s; ${left.length} records left`);
    await sleep(250);
  }
}

export interface StatsTotals { read: number; produced: number; kernel: number; user: number }

/** ringflow.collector.stats.v1 records summed per event topic: what the collector read, produced and dropped. */
export function collectorStatsTotals(stats: readonly TopicRecord[]): Map<string, StatsTotals> {
  const sum = new Map<string, StatsTotals>();
  for (const s of stats) {
    for (const e of s.value.events as { event: string; read: bigint; produced: bigint; kernel_drops: bigint; user_drops: bigint }[]) {
      const a = sum.get(e.event) ?? { read: 0, produced: 0, kernel: 0, user: 0 };
      a.read += Number(e.read); a.produced += Number(e.produced); a.kernel += Number(e.kernel_drops); a.user += Number(e.user_drops);
      sum.set(e.event, a);
    }
  }
  return sum;
}

export async function listTopics(brokers: string): Promise<string[]> {
  const kafka = new Kafka({ clientId: 'ringflow-test-admin', brokers: [brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await admin.listTopics();
  } finally {
    await admin.disconnect();
  }
}

export interface CliRun {
  child: ChildProcess;
  stderr: () => string;
  stdout: () => string;
  /** Resolves when stderr contains `re`. */
  waitFor: (re: RegExp, timeoutMs?: number) => Promise<void>;
  exit: Promise<number | null>;
}

export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; wrap?: string[] } = {}): CliRun {
  const bin = path.join(REPO_ROOT, 'bin', 'ringflow');
  const argv = [...(opts.wrap ?? []), bin, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  let out = '';
  const watchers: { re: RegExp; resolve: () => void }[] = [];
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
    for (const w of [...watchers]) if (w.re.test(err)) { watchers.splice(watchers.indexOf(w), 1); w.resolve(); }
  });
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    child,
    stderr: () => err,
    stdout: () => out,
    exit,
    waitFor: (re, timeoutMs = 60_000) =>
      re.test(err)
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`timed out waiting for ${re} in stderr:\n${err}`)), timeoutMs);
            exit.then(() => { clearTimeout(t); if (!re.test(err)) reject(new Error(`exited before ${re}; stderr:\n${err}`)); });
            watchers.push({ re, resolve: () => { clearTimeout(t); resolve(); } });
          }),
  };
}

/** Run a command to completion; resolves with its pid and exit code. */
export function run(cmd: string, args: string[], opts: { input?: string } = {}): Promise<{ pid: number; code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ pid: child.pid!, code, stdout, stderr }));
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => {}); // the command may exit without reading it all
      child.stdin!.end(opts.input);
    }
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** N TCP connects to a local listener from a separate python3 process; returns its pid and the port. */
export const TCP_DRIVER = `
import socket, os, sys
n = int(sys.argv[1])
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(n + 8)
port = srv.getsockname()[1]
for _ in range(n):
    c = socket.create_connection(('127.0.0.1', port)); a, _ = srv.accept(); a.close(); c.close()
print(os.getpid(), port)
`;
