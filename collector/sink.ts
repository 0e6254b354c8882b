/**
 * Where transcoded records go. The collector only needs this much of a sink,
 * so tests and `--stdout` swap the Kafka producer for something else.
 */
export interface OutRecord {
  readonly topic: string;
  readonly key: string;
  /** Framed Avro bytes (wire format header + body). */
  readonly value: Buffer;
  /** Event type id, for per-type accounting; 0 for the collector's own records. */
  readonly type: number;
}

export interface SinkCounters {
  /** Records acknowledged by the destination, per event type id. */
  readonly produced: Map<number, number>;
  /** Failed send attempts (retriable ones are retried: none of these is by itself a loss). */
  sendErrors: number;
  /** Records refused by the destination and not delivered to their topic, by DropReason (collector.ts). */
  readonly drops?: Map<string, number>;
  /** The same records per event type id, so the stats count them as that type's user drops. */
  readonly lost?: Map<number, number>;
}

export interface EventSink {
  /** Connect and prepare; throws FatalError when the destination is unusable. */
  start(): Promise<void>;
  /** Accept records; never blocks. The caller bounds what it hands over by pending(). */
  enqueue(records: readonly OutRecord[]): void;
  /** Records accepted but not yet acknowledged. */
  pending(): number;
  readonly counters: SinkCounters;
  /** Called whenever acknowledgements reduce pending(). */
  onProgress(cb: () => void): void;
  /** Wait until everything accepted is acknowledged; false on timeout. */
  flush(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}
