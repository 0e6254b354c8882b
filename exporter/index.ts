/** The exporter: ringflow.metrics.v1 and ringflow.spans.v1 -> OTLP gRPC. */
export {
  createExporter, createTraceExporter, createSignalExporter, METRICS_TOPIC, TRACES_TOPIC, DEFAULT_GROUP_ID, DEFAULT_TRACES_GROUP_ID,
} from './service.ts';
export type { Exporter, ExporterOptions, TraceExporterOptions, ServiceOptions, SignalSpec, ExporterCounters } from './service.ts';
export { exportCommand, EXPORT_HELP, parseHistogramMode, parseSignals, SIGNALS } from './command.ts';
export type { Signal } from './command.ts';
export {
  toResourceMetrics, toExponential, toExplicit, pointAttributes, nsToHrTime, explicitBoundsFor, baseResourceAttributes,
  exportOnce, classifyError, resolveEndpoint, createOtlpExporter, grpcExporterConfig, onSdkWarnings,
  EXPLICIT_BOUNDS, INT_ATTRIBUTES, GRPC_STATUS, SCOPE_NAME, SCOPE_VERSION, DEFAULT_SERVICE_NAME,
} from './otlp.ts';
export type {
  HistogramMode, MetricPoint, ExpHistogramRecord, MapOptions, MappedBatch, MetricExporterLike, OtlpExporterLike, OtlpSignal,
  ExportOutcome, OtlpOptions, ResolvedEndpoint,
} from './otlp.ts';
export { toReadableSpans, toReadableSpan, spanAttributes, invalidSpan, createOtlpTraceExporter, UNKNOWN_SERVICE } from './traces.ts';
export type { SpanRecord, SpanExporterLike, TraceMapOptions, MappedSpans } from './traces.ts';
