/**
 * Optional programs (section marked '?', libbpf's "not loaded unless asked"):
 * the loader asks for one when its hook exists on this kernel and leaves it
 * out, reporting it by name, when not; the rest of the object loads. Programs
 * without the mark stay required. block.bpf.o's block_io_start (kernel 6.5+)
 * is optional, so the block signal loads on older kernels.
 *
 * Every tracepoint ringflow uses exists on this kernel, so the missing ones are
 * made up, in an object built here (real clang, real kernel, root).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Session, forEachRecord, isNativeError } from '../../native/index.ts';
import { encodeSettings } from '../../collector/signals/settings.ts';
import { objectPath } from '../../collector/signals/registry.ts';
import { ensureTracefs } from '../../collector/preflight.ts';
import { ROOT, sleep } from './helpers.ts';

const prog = (section: string, name: string) =>
  `__attribute__((section("${section}"), used)) int ${name}(void *ctx) { return 0; }\n`;

let dir = '';
function build(name: string, programs: string): string {
  const src = join(dir, `${name}.bpf.c`);
  writeFileSync(src, 'char LICENSE[] __attribute__((section("license"), used)) = "GPL";\n' + programs);
  execFileSync('clang', ['-O2', '-g', '-target', 'bpf', '-c', src, '-o', join(dir, `${name}.bpf.o`)]);
  return join(dir, `${name}.bpf.o`);
}

before(() => {
  ensureTracefs();
  execFileSync('make', ['-s', '-C', `${ROOT}bpf`], { stdio: 'inherit' });
  dir = mkdtempSync(join(tmpdir(), 'ringflow-optional-'));
});
after(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

describe('optional programs', () => {
  it('an optional program whose tracepoint is missing is left out and named; the others load and attach', async (t) => {
    const obj = build('opt', [
      prog('tp_btf/sched_switch', 'rf_required'),
      prog('?tp_btf/sched_wakeup', 'rf_optional_present'),
      prog('?tp_btf/ringflow_no_such_tracepoint', 'rf_optional_btf_missing'),
      prog('?tracepoint/ringflow_test/no_such_tracepoint', 'rf_optional_tp_missing'),
    ].join(''));
    const session = new Session({ ringBytes: 1 << 16 });
    t.after(() => session.stop());
    const info = session.addObject(obj, {});
    assert.deepEqual(info.programs.sort(), ['rf_optional_present', 'rf_required']);
    assert.deepEqual(info.skipped.map((s) => [s.program, s.section]).sort(), [
      ['rf_optional_btf_missing', 'tp_btf/ringflow_no_such_tracepoint'],
      ['rf_optional_tp_missing', 'tracepoint/ringflow_test/no_such_tracepoint'],
    ]);
    const btf = info.skipped.find((s) => s.program === 'rf_optional_btf_missing')!;
    assert.equal(btf.reason, "this kernel has no tracepoint 'ringflow_no_such_tracepoint'");
  });

  it('a required program whose tracepoint is missing still fails the object, naming it', async (t) => {
    const obj = build('req', prog('tp_btf/sched_switch', 'rf_fine') + prog('tp_btf/ringflow_no_such_tracepoint', 'rf_required_missing'));
    const session = new Session({ ringBytes: 1 << 16 });
    t.after(() => session.stop());
    let err: unknown;
    try {
      session.addObject(obj, {});
    } catch (e) {
      err = e;
    }
    assert.ok(isNativeError(err), `throws a native error, got ${String(err)}`);
    assert.equal(err.op, 'bpf_object__load');
  });

  it('block.bpf.o: block_io_start is optional (attached here, where the kernel has it), nothing skipped', async (t) => {
    const session = new Session({ ringBytes: 1 << 16 });
    t.after(() => session.stop());
    const info = session.addObject(objectPath('block'), encodeSettings({ selfTgid: process.pid }));
    assert.ok(info.programs.includes('rf_block_io_start'), info.programs.join(','));
    assert.deepEqual(info.skipped, []);
    const sections = execFileSync('llvm-objdump', ['-h', objectPath('block')], { encoding: 'utf8' });
    assert.match(sections, /\?tp_btf\/block_io_start/, 'marked optional in bpf/block.bpf.c');
  });

  it('block.bpf.c built for a kernel without its tracepoint: the signal loads without rf_block_io_start and still reports writes', async (t) => {
    // the real object, its optional hook renamed to one no kernel has (what a 6.1 kernel is to block_io_start)
    const src = readFileSync(`${ROOT}bpf/block.bpf.c`, 'utf8').replace('SEC("?tp_btf/block_io_start")', 'SEC("?tp_btf/ringflow_no_block_io_start")');
    assert.match(src, /ringflow_no_block_io_start/);
    writeFileSync(join(dir, 'block.bpf.c'), src);
    const arch = process.arch === 'arm64' ? 'arm64' : 'x86';
    execFileSync('clang', ['-g', '-O2', '-target', 'bpf', `-D__TARGET_ARCH_${arch}`, '-I', `${ROOT}bpf`, '-Wall', '-Werror', '-c', join(dir, 'block.bpf.c'), '-o', join(dir, 'block-old.bpf.o')]);
    const session = new Session({ ringBytes: 1 << 22 });
    t.after(() => session.stop());
    const info = session.addObject(join(dir, 'block-old.bpf.o'), encodeSettings({ selfTgid: process.pid }));
    assert.deepEqual(info.skipped.map((s) => s.program), ['rf_block_io_start']);
    assert.deepEqual(info.programs.sort(), ['rf_block_rq_complete', 'rf_block_rq_issue', 'rf_block_rq_requeue']);
    let writes = 0;
    session.start((batch) => forEachRecord(batch, (off) => {
      if (batch[off] === 3 && batch[off + 84] === 1) writes++; // RF_EV_BLOCK_RQ, RF_BLOCK_WRITE (struct rf_block_event op @84)
    }));
    // direct writes on the root disk (not tmpfs), so they reach the block layer
    const wdir = mkdtempSync('/var/tmp/ringflow-optional-');
    t.after(() => rmSync(wdir, { recursive: true, force: true }));
    execFileSync('dd', ['if=/dev/zero', `of=${join(wdir, 'f')}`, 'bs=64k', 'count=32', 'oflag=direct', 'status=none']);
    await sleep(300);
    const lost = session.mapCounters('rf_block_lost')!;
    await session.stop();
    assert.ok(writes >= 1, `block writes reported without block_io_start (${writes}); rf_block_lost ${lost.join(',')}`);
  });
});
