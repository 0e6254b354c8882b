/**
 * Counts what reached the OpenTelemetry Collector's file (JSON lines, appended
 * across restarts) for the soak: reads only what was appended since the last
 * call, so polling a file of many megabytes stays cheap, and keeps per
 * classified point its identity (metric, resource, attributes, window), so a
 * point exported twice (an exporter killed after the backend accepted, or a
 * request that timed out and was accepted later as well as its retry) is a
 * duplicate, reported apart, not extra work. A point seen twice with
 * different values is no duplicate: it is a conflict, and always a bug.
 */
import fs from 'node:fs';

export type Attrs = Record<string, string>;
type AnyValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };
type KV = { key: string; value: AnyValue };

/** OTLP JSON attributes as strings (ints arrive as strings or numbers, depending on the encoder). */
export function attrsOf(list: readonly KV[] | undefined): Attrs {
  const out: Attrs = {};
  for (const a of list ?? []) {
    const v = a.value;
    out[a.key] = String(v.stringValue ?? v.intValue ?? v.boolValue ?? v.doubleValue ?? '');
  }
  return out;
}

export interface PointInfo { metric: string; resource: Attrs; attrs: Attrs; count: number }
export interface SpanInfo { name: string; kind: number; resource: Attrs; attrs: Attrs; statusCode: number }

export interface Tally {
  /** Distinct points' (or spans') counts summed. */
  unique: number;
  /** Copies of a point already seen with the same value (counted once in `unique`). */
  duplicates: number;
  /** Copies of a point already seen with a different value. */
  conflicts: number;
}

const emptyTally = (): Tally => ({ unique: 0, duplicates: 0, conflicts: 0 });

export class OtlpTally {
  private offset = 0;
  private readonly pointSeen = new Map<string, number>();
  private readonly spanSeen = new Set<string>();
  readonly metrics = new Map<string, Tally>();
  readonly spans = new Map<string, Tally>();
  /** Lines that did not parse (a torn line is a bug of the backend or of us). */
  badLines = 0;

  /**
   * @param classifyPoint the soak signal a point belongs to, or undefined to ignore it
   * @param classifySpan the same for a span
   */
  private readonly file: string;
  private readonly classifyPoint: (p: PointInfo) => string | undefined;
  private readonly classifySpan: (s: SpanInfo) => string | undefined;

  constructor(file: string, classifyPoint: (p: PointInfo) => string | undefined, classifySpan: (s: SpanInfo) => string | undefined) {
    this.file = file;
    this.classifyPoint = classifyPoint;
    this.classifySpan = classifySpan;
  }

  /** Reads what was appended since the last call (complete lines only). */
  update(): void {
    let fd: number;
    try {
      fd = fs.openSync(this.file, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= this.offset) return;
      const buf = Buffer.alloc(size - this.offset);
      const n = fs.readSync(fd, buf, 0, buf.length, this.offset);
      const end = buf.lastIndexOf(0x0a, n - 1);
      if (end < 0) return; // no complete line yet
      this.offset += end + 1;
      for (const line of buf.subarray(0, end).toString('utf8').split('\n')) this.line(line);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** One JSON line of the file exporter. Exposed for the table test. */
  line(line: string): void {
    if (!line.trim()) return;
    let doc: { resourceMetrics?: any[]; resourceSpans?: any[] };
    try {
      doc = JSON.parse(line);
    } catch {
      this.badLines++;
      return;
    }
    for (const rm of doc.resourceMetrics ?? []) {
      const resource = attrsOf(rm.resource?.attributes);
      for (const sm of rm.scopeMetrics ?? []) {
        for (const m of sm.metrics ?? []) {
          const data = m.exponentialHistogram ?? m.histogram ?? m.sum ?? m.gauge;
          for (const dp of data?.dataPoints ?? []) {
            const count = Number(dp.count ?? dp.asInt ?? dp.asDouble ?? 0);
            const attrs = attrsOf(dp.attributes);
            const signal = this.classifyPoint({ metric: m.name, resource, attrs, count });
            if (signal === undefined) continue;
            const key = JSON.stringify([m.name, resource, attrs, dp.startTimeUnixNano, dp.timeUnixNano]);
            const t = this.metrics.get(signal) ?? emptyTally();
            this.metrics.set(signal, t);
            const before = this.pointSeen.get(key);
            if (before === undefined) {
              this.pointSeen.set(key, count);
              t.unique += count;
            } else if (before === count) t.duplicates += count;
            else t.conflicts += count;
          }
        }
      }
    }
    for (const rs of doc.resourceSpans ?? []) {
      const resource = attrsOf(rs.resource?.attributes);
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          const signal = this.classifySpan({ name: s.name, kind: s.kind, resource, attrs: attrsOf(s.attributes), statusCode: s.status?.code ?? 0 });
          if (signal === undefined) continue;
          const t = this.spans.get(signal) ?? emptyTally();
          this.spans.set(signal, t);
          const key = `${s.traceId}/${s.spanId}`;
          if (this.spanSeen.has(key)) t.duplicates++;
          else {
            this.spanSeen.add(key);
            t.unique++;
          }
        }
      }
    }
  }

  metric(signal: string): Tally {
    return this.metrics.get(signal) ?? emptyTally();
  }

  span(signal: string): Tally {
    return this.spans.get(signal) ?? emptyTally();
  }
}
