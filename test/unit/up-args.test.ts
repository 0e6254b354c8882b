// `ringflow up` passes --max-clock-skew to the processor as it does --window and --lateness
// (it used to be left to the collector's parser, which refuses it, so up always ran with 60s).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitUpArgs, processorArgs, exporterArgs } from '../../cli/up.ts';

test('splitUpArgs takes --max-clock-skew in both spellings and leaves it out of the collector flags', () => {
  const cases: { argv: string[]; maxClockSkew: string | undefined; collect: string[] }[] = [
    { argv: ['--max-clock-skew', '5m', '--signals', 'tcp'], maxClockSkew: '5m', collect: ['--signals', 'tcp'] },
    { argv: ['--signals=sched', '--max-clock-skew=0s'], maxClockSkew: '0s', collect: ['--signals=sched'] },
    { argv: ['--pid', '1'], maxClockSkew: undefined, collect: ['--pid', '1'] },
  ];
  for (const c of cases) {
    const r = splitUpArgs(c.argv);
    assert.equal(r.maxClockSkew, c.maxClockSkew, c.argv.join(' '));
    assert.deepEqual(r.collect, c.collect, c.argv.join(' '));
  }
});

test('splitUpArgs checks --max-clock-skew with the processor\'s bounds before anything starts', () => {
  assert.throws(() => splitUpArgs(['--max-clock-skew']), /--max-clock-skew: missing value/);
  assert.throws(() => splitUpArgs(['--max-clock-skew=25h']), /--max-clock-skew: 25h is out of range; expected 0\.\.24h$/);
  assert.throws(() => splitUpArgs(['--max-clock-skew', 'soon']), /--max-clock-skew/);
});

test('processorArgs passes --max-clock-skew through only when given (else the processor default applies)', () => {
  const withSkew = splitUpArgs(['--window=2s', '--max-clock-skew', '90s', '--rules', 'r.yaml']);
  assert.deepEqual(processorArgs('k:9092', withSkew),
    ['process', '--brokers', 'k:9092', '--window', '2s', '--lateness', '5s', '--rules', 'r.yaml', '--max-clock-skew', '90s']);
  assert.deepEqual(processorArgs('k:9092', splitUpArgs([])),
    ['process', '--brokers', 'k:9092', '--window', '10s', '--lateness', '5s']);
});

// `ringflow up --signals profile` collected stacks that the processor merged into
// ringflow.profiles.v1 but the exporter it started never sent: profiles are opt-in
// for `ringflow export`, so up asks for them when the collector makes them.
test('exporterArgs: profiles exported exactly when the collector\'s signals include profile or offcpu', () => {
  const cases: [string[], string[]][] = [
    [['sched', 'tcp'], ['export', '--brokers', 'k:9092']],
    [['profile'], ['export', '--brokers', 'k:9092', '--signals', 'metrics,traces,profiles']],
    [['sched', 'offcpu'], ['export', '--brokers', 'k:9092', '--signals', 'metrics,traces,profiles']],
    [['profile', 'offcpu', 'l7'], ['export', '--brokers', 'k:9092', '--signals', 'metrics,traces,profiles']],
    [[], ['export', '--brokers', 'k:9092']],
  ];
  for (const [signals, want] of cases) assert.deepEqual(exporterArgs('k:9092', signals), want, signals.join(','));
});
