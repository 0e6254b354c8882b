/**
 * Errors a user can act on. The CLI prints `ringflow: <message>` as one line and
 * exits with `exitCode`; everything else is a bug and keeps its stack.
 */
export class FatalError extends Error {
  readonly exitCode: number;
  readonly retriable: boolean;
  constructor(message: string, opts: { exitCode?: number; cause?: unknown; retriable?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'FatalError';
    this.exitCode = opts.exitCode ?? 1;
    this.retriable = opts.retriable ?? false;
  }
}

/** Exit codes, so scripts can tell causes apart. */
export const EXIT = {
  usage: 2,
  privileges: 3,
  kernel: 4,
  kafka: 5,
  build: 6,
} as const;
