/** Public surface of the processor's pure core: histograms, windows, aggregation, cardinality. */
export { ExpHistogram, index20, mapToIndex, lowerBoundary, MAX_SCALE, MIN_SCALE, DEFAULT_MAX_SIZE } from './histogram.ts';
export type { ExpHistogramJSON, ExpHistogramOptions } from './histogram.ts';
export { WindowAssigner, DEFAULT_WINDOW_MS, DEFAULT_LATENESS_MS } from './window.ts';
export type { Window, WindowAssignerOptions, WindowAssignerState } from './window.ts';
export { METRICS, WindowAggregator, PartialAggregator, mergePoints, seriesKey } from './aggregate.ts';
export type {
  AddResult,
  AggregatorCounters,
  Attribute,
  BlockIoEvent,
  CswitchEvent,
  DimensionDef,
  EventBase,
  MetricDef,
  MetricKind,
  PartialSeries,
  PartialWindow,
  RunqlatEvent,
  SeriesPoint,
  TcpConnectEvent,
  TcpDropEvent,
  TcpRetransmitEvent,
  TopicEvent,
  WindowAggregatorOptions,
  WindowAggregatorState,
} from './aggregate.ts';
export { capCardinality, OTHER, DEFAULT_TOP_K } from './cardinality.ts';
export type { CardinalityOptions } from './cardinality.ts';
