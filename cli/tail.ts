/**
 * `ringflow tail TOPIC`: decode a topic's records to JSON lines, each with the
 * schema its single-object header names (so it works across schema versions).
 */
import { parseArgs } from 'node:util';
import { FatalError, EXIT } from '../common/errors.ts';
import { parseBrokers, parseIntFlag, parseDurationMs } from '../common/options.ts';
import { createKafkaClient, connectAdmin, describeKafkaError } from '../kafka/client.ts';
import { DEFAULT_BROKERS } from './collect.ts';
import { decodeToJsonLine } from '../collector/codec.ts';

const HELP = `Usage: ringflow tail TOPIC [options]

Prints the records of TOPIC (e.g. ringflow.tcp.connect.v1, or tcp.connect) as
JSON lines, decoded with the writer schema each record names.

Options:
  --brokers H:P[,H:P]  Kafka bootstrap brokers (default 127.0.0.1:9092)
  --from-beginning     start at the earliest offset instead of the end
  --max N              stop after N records
  --timeout DUR        stop when no record arrived for DUR (default: never)
  -h, --help           this help`;

export function topicName(arg: string): string {
  if (arg.startsWith('ringflow.')) return arg;
  return `ringflow.${arg}.v1`;
}

export async function tailCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      brokers: { type: 'string' },
      'from-beginning': { type: 'boolean' },
      max: { type: 'string' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new FatalError('tail: give exactly one TOPIC; see ringflow tail --help', { exitCode: EXIT.usage });
  const topic = topicName(positionals[0]!);
  const brokers = v.brokers === undefined ? DEFAULT_BROKERS : parseBrokers(v.brokers);
  const max = v.max === undefined ? Infinity : parseIntFlag('--max', v.max, 1, Number.MAX_SAFE_INTEGER);
  const idleMs = v.timeout === undefined ? undefined : parseDurationMs('--timeout', v.timeout, 1);

  const kafka = createKafkaClient(brokers, 'ringflow-tail');
  const admin = await connectAdmin(kafka, brokers);
  const topics = await admin.listTopics();
  await admin.disconnect();
  if (!topics.includes(topic)) {
    throw new FatalError(`tail: topic ${topic} does not exist on ${brokers.join(',')}; ringflow topics: ${topics.filter((t) => t.startsWith('ringflow.')).join(', ') || 'none yet'}`, { exitCode: EXIT.usage });
  }
  // a throwaway group: tail never commits, so it never moves anyone's offsets
  const consumer = kafka.consumer({ groupId: `ringflow-tail-${process.pid}-${Date.now()}`, readUncommitted: false });
  let seen = 0;
  let bad = 0;
  let idle: NodeJS.Timeout | undefined;
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: v['from-beginning'] ?? false });
    await new Promise<void>((resolve, reject) => {
      const arm = () => {
        if (idleMs === undefined) return;
        if (idle) clearTimeout(idle);
        idle = setTimeout(resolve, idleMs);
      };
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
      arm();
      consumer
        .run({
          autoCommit: false,
          eachMessage: async ({ message, partition }) => {
            if (seen >= max) return;
            arm();
            try {
              process.stdout.write(decodeToJsonLine(message.value!) + '\n');
            } catch (err) {
              bad++;
              console.error(`ringflow: ${topic}[${partition}]@${message.offset}: cannot decode (${(err as Error).message})`);
            }
            seen++;
            if (seen >= max) resolve();
          },
        })
        .catch((err) => reject(new FatalError(`tail: ${describeKafkaError(err)}`, { exitCode: EXIT.kafka, cause: err })));
    });
  } finally {
    if (idle) clearTimeout(idle);
    await consumer.disconnect().catch(() => {});
  }
  return bad > 0 ? 1 : 0;
}
