/** Raw C event records -> framed Avro records (and JSON lines for people). */
export { createTranscoder, buildBatch } from './transcode.ts';
export type { Transcoder, TranscoderOptions, TranscodedRecord, RecordSink, BatchResult, DropReasonNames } from './transcode.ts';
export { toJsonLine } from './json.ts';
export { EventType, BATCH_RECORD_PREFIX, BATCH_RECORD_ALIGN } from './types.ts';
export type { EventTypeId } from './types.ts';
export { formatInet, formatIPv4, formatIPv6, formatEndpoint, AF_INET, AF_INET6 } from './inet.ts';
