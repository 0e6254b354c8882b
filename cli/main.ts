/**
 * ringflow's command line. Each command lives in its own module; this file
 * only dispatches and turns FatalErrors into one line and an exit code.
 */
import { FatalError, EXIT } from '../common/errors.ts';

const USAGE = `ringflow: eBPF observability pipeline (kernel ring buffers -> Avro -> Kafka -> windowed histograms -> OTLP)

Usage: ringflow COMMAND [options]

Commands:
  up        the whole pipeline here: Kafka (unless --brokers), collect, process, export, and a summary per window
  collect   load the eBPF programs and publish their events to Kafka (or --stdout)
  profile   a one-off CPU (or --offcpu) profile of this host: folded stacks, pprof or an SVG flame graph
  tail      decode a topic's records to JSON lines
  process   aggregate events into windowed histograms, exactly once, on ringflow.metrics.v1
  export    ship ringflow.metrics.v1 and ringflow.spans.v1 (and ringflow.profiles.v1 with --signals profiles) to an OTLP backend over gRPC
  kafka     run a local Apache Kafka broker: kafka start|stop|status
  otelcol   run a local OpenTelemetry Collector (OTLP in, JSON file out): otelcol start|stop|status|build

Run "ringflow COMMAND --help" for a command's options.`;

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  collect: async () => (await import('./collect.ts')).collectCommand,
  up: async () => (await import('./up.ts')).upCommand,
  tail: async () => (await import('./tail.ts')).tailCommand,
  profile: async () => (await import('./profile.ts')).profileCommand,
  kafka: async () => (await import('./kafka.ts')).kafkaCommand,
  process: async () => (await import('./process.ts')).processCommand,
  export: async () => (await import('../exporter/command.ts')).exportCommand,
  otelcol: async () => (await import('./otelcol.ts')).otelcolCommand,
};

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(USAGE);
    return cmd === undefined ? EXIT.usage : 0;
  }
  const load = COMMANDS[cmd];
  if (!load) {
    console.error(`ringflow: unknown command "${cmd}"; run "ringflow --help" for the list`);
    return EXIT.usage;
  }
  return (await load())(rest);
}

/** One line for errors a user can act on; a stack only for bugs. */
export function reportError(err: unknown): number {
  if (err instanceof FatalError) {
    console.error(`ringflow: ${err.message}`);
    return err.exitCode;
  }
  const e = err as { code?: string; message?: string };
  if (e?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || e?.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' || e?.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    console.error(`ringflow: ${e.message?.split('\n')[0]}; see --help`);
    return EXIT.usage;
  }
  console.error(err);
  return 1;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.exitCode = reportError(err);
    },
  );
}
