/** The exporter: ringflow.metrics.v1 -> OTLP gRPC. */
export { createExporter, METRICS_TOPIC, DEFAULT_GROUP_ID } from './service.ts';
export type { Exporter, ExporterOptions, ExporterCounters } from './service.ts';
export { exportCommand, EXPORT_HELP, parseHistogramMode } from './command.ts';
export {
  toResourceMetrics, toExponential, toExplicit, pointAttributes, nsToHrTime, explicitBoundsFor, baseResourceAttributes,
  exportOnce, classifyError, resolveEndpoint, createOtlpExporter, onSdkWarnings,
  EXPLICIT_BOUNDS, INT_ATTRIBUTES, GRPC_STATUS, SCOPE_NAME, SCOPE_VERSION, DEFAULT_SERVICE_NAME,
} from './otlp.ts';
export type { HistogramMode, MetricPoint, ExpHistogramRecord, MapOptions, MappedBatch, MetricExporterLike, ExportOutcome, OtlpOptions, ResolvedEndpoint } from './otlp.ts';
