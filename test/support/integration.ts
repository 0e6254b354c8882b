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
export async function ownBroker(): Promise<{ brokers: string; stateDir: string; port: number; controllerPort: number; stop: () => Promise<void> }> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ringflow-it-kafka-'));
  const port = await freePort();
  let controllerPort = await freePort();
  while (controllerPort === port) controllerPort = await freePort();
  const r = await startBroker({ stateDir, port, controllerPort });
  return {
    brokers: r.brokers,
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

/**
 * Every record of `topic` up to its current end, each decoded with the schema
 * its single-object header names. A record that does not decode throws.
 * Reads read_committed; since a transactional topic ends in commit markers
 * that no consumer sees, a partition also counts as read once nothing new
 * arrived for `quietMs`.
 */
export async function readTopic(brokers: string, topic: string, quietMs = 2500): Promise<TopicRecord[]> {
  const kafka = new Kafka({ clientId: 'ringflow-test-reader', brokers: [brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const remaining = new Map<number, bigint>();
  for (const p of ends) if (BigInt(p.high) > BigInt(p.low)) remaining.set(p.partition, BigInt(p.high));
  const out: TopicRecord[] = [];
  if (remaining.size === 0) return out;
  const consumer = kafka.consumer({ groupId: `ringflow-test-${process.pid}-${Date.now()}-${Math.random()}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let failure: unknown;
  await new Promise<void>((resolve, reject) => {
    let quiet: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(timer);
      clearTimeout(quiet);
      resolve();
    };
    const rearm = () => {
      clearTimeout(quiet);
      quiet = setTimeout(done, quietMs);
    };
    const timer = setTimeout(() => reject(new Error(`timed out reading ${topic}; still waiting on partitions ${[...remaining.keys()]}`)), 60_000);
    consumer.on(consumer.events.GROUP_JOIN, rearm);
    consumer
      .run({
        autoCommit: false,
        eachMessage: async ({ partition, message }) => {
          rearm();
          const high = remaining.get(partition);
          if (high === undefined) return;
          try {
            const { schema, value } = decodeRecord(message.value!);
            out.push({ partition, offset: message.offset, key: message.key?.toString() ?? '', schema, value: value as Record<string, unknown> });
          } catch (err) {
            failure ??= new Error(`${topic}[${partition}]@${message.offset} does not decode: ${(err as Error).message}`);
          }
          if (BigInt(message.offset) + 1n >= high) {
            remaining.delete(partition);
            if (remaining.size === 0) done();
          }
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  if (failure) throw failure;
  return out;
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
