/**
 * One-off profile renderers (ringflow profile): pure functions from
 * ringflow.profile.stacks.v1 records to folded stacks, a gzipped pprof
 * profile or an SVG flame graph.
 */
export { renderFolded, type FoldedOptions } from './folded.ts';
export { renderPprof, encodePprofMessage, type PprofOptions, type MappingInfo } from './pprof.ts';
export { renderFlamegraph, type FlamegraphOptions } from './flamegraph.ts';
export { foldStacks, rootFirstNames, frameName, defaultKind, type FoldedStack, type ProfileKind, type ProfileStackRecord } from './stacks.ts';
