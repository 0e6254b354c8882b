/**
 * collector/signals/fs-filter.ts: the fs signal's --fs and --path as the
 * collector checks and encodes them for bpf/fs_filter.h (table tests), and
 * what collect's flags and --help make of them. The kernel side:
 * test/native/fs-filters.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { FatalError } from '../../common/errors.ts';
import { COLLECT_HELP, parseCollectArgs } from '../../cli/collect.ts';
import { FS_MAX_PREFIXES, FS_MAX_TYPES, encodeFsFilterSettings, kernelDevOf, kernelFsTypes, parseFsTypes, resolveFsPrefixes } from '../../collector/signals/fs-filter.ts';
import { REPO_ROOT } from '../../collector/signals/registry.ts';

const usage = (re: RegExp) => (e: unknown) => e instanceof FatalError && e.exitCode === 2 && re.test(e.message);

test('kernelDevOf: glibc st_dev -> the kernel\'s major << 20 | minor', () => {
  for (const [st, major, minor] of [
    [0x803n, 8, 3], // sda3
    [0x700n, 7, 0], // loop0
    [0x2en, 0, 46], // an anonymous (tmpfs) dev
    [0x10_00_07_01n, 7, 0x10001], // loop65537: minor's high bits from bit 20
    [0xffff_ffffn, 0xfff, 0xfffff], // the largest kernel dev_t (12-bit major, 20-bit minor): minor bits 8-19 from st bits 20-31
  ] as const) {
    assert.equal(kernelDevOf(st), ((major << 20) | minor) >>> 0, `st_dev ${st.toString(16)}`);
  }
});

test('kernelDevOf matches the s_dev /proc/self/mountinfo gives for / (major:minor)', () => {
  const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === '/');
  assert.ok(line);
  const [major, minor] = line.split(' ')[2]!.split(':').map(Number);
  const st = fs.statSync('/', { bigint: true });
  assert.equal(kernelDevOf(st.dev), ((major! << 20) | minor!) >>> 0);
});

test('parseFsTypes: names as /proc/filesystems has them, repeated or comma lists, deduplicated; bad ones exit 2', () => {
  for (const [given, want] of [
    [['ext4'], ['ext4']],
    [['tmpfs,ext4', 'ext4'], ['tmpfs', 'ext4']],
    [[' xfs '], ['xfs']],
    [['fuseblk'], ['fuseblk']],
  ] as const) {
    assert.deepEqual(parseFsTypes(given), want, given.join(' '));
  }
  // s_type->name is fuse for every FUSE file system: a subtype would never match, silently
  assert.throws(() => parseFsTypes(['fuse.sshfs']), usage(/^--fs: "fuse\.sshfs" is a subtype as \/proc\/mounts shows it; the filter sees the kernel's type, fuse$/));
  for (const bad of [[''], ['Ext4'], ['ext 4'], ['a'.repeat(16)], ['x/y']]) {
    assert.throws(() => parseFsTypes(bad), usage(/^--fs: ".*" is not a file system type name/), JSON.stringify(bad));
  }
  // a name this kernel does not know would match nothing: refused, naming the ones it knows
  const known = kernelFsTypes('nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\tfuse\n\tfuseblk\n');
  assert.deepEqual(known, ['sysfs', 'tmpfs', 'ext4', 'fuse', 'fuseblk']);
  assert.deepEqual(parseFsTypes(['ext4,tmpfs'], known), ['ext4', 'tmpfs']);
  assert.throws(() => parseFsTypes(['ext5'], known), usage(/^--fs: "ext5" is not a file system type this kernel knows \(\/proc\/filesystems: sysfs, tmpfs, ext4, fuse, fuseblk\)$/));
  assert.ok(kernelFsTypes()!.includes('tmpfs'), 'this kernel lists tmpfs');
  assert.throws(() => parseFsTypes([Array.from({ length: FS_MAX_TYPES + 1 }, (_, i) => `t${i}`).join(',')]), usage(/at most 8/));
});

test('resolveFsPrefixes: realpath + stat of each directory; a missing prefix or a file is one clear line, exit 2', () => {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'rf-fs-filter-')));
  try {
    fs.mkdirSync(path.join(dir, 'a'));
    fs.writeFileSync(path.join(dir, 'file'), '');
    fs.symlinkSync(path.join(dir, 'a'), path.join(dir, 'link'));
    const st = fs.statSync(path.join(dir, 'a'), { bigint: true });
    const [p, again] = [resolveFsPrefixes([path.join(dir, 'link')]), resolveFsPrefixes([path.join(dir, 'a'), path.join(dir, 'link')])];
    assert.deepEqual(p, [{ given: path.join(dir, 'link'), path: path.join(dir, 'a'), dev: kernelDevOf(st.dev), ino: st.ino }]);
    assert.equal(again.length, 1, 'the same directory twice is one prefix');
    assert.throws(() => resolveFsPrefixes([path.join(dir, 'nope')]), usage(/^--path: .*nope: no such directory$/));
    assert.throws(() => resolveFsPrefixes([path.join(dir, 'file')]), usage(/^--path: .*file is not a directory$/));
    assert.throws(() => resolveFsPrefixes(['']), usage(/^--path: an empty prefix$/));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('encodeFsFilterSettings: nothing when unset (the object\'s defaults: off); the layout of bpf/fs_filter.h when set', () => {
  assert.deepEqual(encodeFsFilterSettings({}), {});
  assert.deepEqual(encodeFsFilterSettings({ types: [], prefixes: [] }), {});
  const g = encodeFsFilterSettings({ types: ['tmpfs', 'ext4'], prefixes: [{ given: '/x', path: '/x', dev: (7 << 20) | 1, ino: 0x1_0000_0002n }] });
  assert.deepEqual(Object.keys(g).sort(), ['rf_fs_prefixes', 'rf_fs_prefixes_n', 'rf_fs_types', 'rf_fs_types_n']);
  assert.equal(g.rf_fs_types_n!.readUInt32LE(), 2);
  assert.equal(g.rf_fs_types!.length, FS_MAX_TYPES * 16);
  assert.equal(g.rf_fs_types!.subarray(0, 16).toString('latin1'), 'tmpfs'.padEnd(16, '\0'));
  assert.equal(g.rf_fs_types!.subarray(16, 32).toString('latin1'), 'ext4'.padEnd(16, '\0'));
  assert.equal(g.rf_fs_prefixes_n!.readUInt32LE(), 1);
  assert.equal(g.rf_fs_prefixes!.length, FS_MAX_PREFIXES * 16);
  assert.equal(g.rf_fs_prefixes!.readBigUInt64LE(0), 0x1_0000_0002n);
  assert.equal(g.rf_fs_prefixes!.readUInt32LE(8), (7 << 20) | 1);
});

test('the globals\' names and table sizes are the ones bpf/fs_filter.h declares', () => {
  const h = fs.readFileSync(path.join(REPO_ROOT, 'bpf', 'fs_filter.h'), 'utf8');
  assert.match(h, /#define RF_FS_MAX_TYPES\s+8\b/);
  assert.match(h, /#define RF_FS_MAX_PREFIXES\s+64\b/);
  for (const name of ['rf_fs_types_n', 'rf_fs_types', 'rf_fs_prefixes_n', 'rf_fs_prefixes']) assert.match(h, new RegExp(`const volatile [^;]*\\b${name}\\b`), name);
});

test('collect: --fs and --path reach the config; a missing --path exits 2 with one line; --help names both', () => {
  assert.throws(() => parseCollectArgs(['--signals', 'fs', '--fs', 'ext5']), usage(/^--fs: "ext5" is not a file system type this kernel knows/));
  const c = parseCollectArgs(['--signals', 'fs', '--fs', 'ext4', '--fs', 'tmpfs', '--path', '/', '--path', os.tmpdir()]);
  assert.deepEqual(c.fs.types, ['ext4', 'tmpfs']);
  assert.deepEqual(c.fs.prefixes!.map((p) => p.path), ['/', fs.realpathSync(os.tmpdir())]);
  assert.deepEqual(parseCollectArgs([]).fs, {});
  assert.throws(() => parseCollectArgs(['--signals', 'fs', '--path', '/nonexistent-ringflow-prefix']), usage(/^--path: \/nonexistent-ringflow-prefix: no such directory$/));
  assert.throws(() => parseCollectArgs(['--path', '/']), usage(/^--path filters the fs signal only; add fs to --signals$/));
  assert.throws(() => parseCollectArgs(['--signals', 'tcp', '--fs', 'ext4']), usage(/^--fs filters the fs signal only; add fs to --signals$/));
  for (const flag of ['--path DIR', '--fs TYPE', '--min-latency DUR']) assert.ok(COLLECT_HELP.includes(flag), flag);
  const r = spawnSync(path.join(REPO_ROOT, 'bin', 'ringflow'), ['collect', '--stdout', '--signals', 'fs', '--path', '/nonexistent-ringflow-prefix'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.stderr.trim(), 'ringflow: --path: /nonexistent-ringflow-prefix: no such directory');
});
