/**
 * Checks run before anything is loaded, so each missing precondition is one
 * line naming the cause and the fix instead of a libbpf error further down.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { FatalError, EXIT } from '../common/errors.ts';
import { objectPath, REPO_ROOT } from './signals/registry.ts';

const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;
const CAP_BPF = 39n;

/** Effective capability mask of this process from /proc/self/status. */
export function effectiveCaps(statusText: string): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(statusText);
  return m ? BigInt('0x' + m[1]) : 0n;
}

/** Loading tracing programs needs CAP_BPF + CAP_PERFMON (5.8+) or CAP_SYS_ADMIN. */
export function canLoadBpf(caps: bigint): boolean {
  const has = (c: bigint) => (caps >> c) & 1n;
  return has(CAP_SYS_ADMIN) === 1n || (has(CAP_BPF) === 1n && has(CAP_PERFMON) === 1n);
}

export interface PreflightEnv {
  procStatus?: string;
  btfPath?: string;
  tracefsRoots?: string[];
}

export function checkPrivileges(env: PreflightEnv = {}): void {
  const status = env.procStatus ?? fs.readFileSync('/proc/self/status', 'utf8');
  if (!canLoadBpf(effectiveCaps(status))) {
    throw new FatalError(
      'loading eBPF programs needs root or CAP_BPF+CAP_PERFMON; run with sudo, or grant them: sudo setcap cap_bpf,cap_perfmon+ep "$(command -v node)"',
      { exitCode: EXIT.privileges },
    );
  }
}

export function checkBtf(env: PreflightEnv = {}): void {
  const p = env.btfPath ?? '/sys/kernel/btf/vmlinux';
  if (!fs.existsSync(p)) {
    throw new FatalError(
      `this kernel exposes no BTF at ${p}, which CO-RE programs need; use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 5.4 are)`,
      { exitCode: EXIT.kernel },
    );
  }
}

/**
 * Classic tracepoints (sock:inet_sock_set_state, syscalls:*) need tracefs
 * mounted: libbpf reads each tracepoint's id from it. Many minimal hosts (and
 * our CI VMs) boot without it, so when we may mount it we do, and say so.
 */
export function ensureTracefs(env: PreflightEnv & { mount?: (dir: string) => void; log?: (l: string) => void } = {}): void {
  const roots = env.tracefsRoots ?? ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'];
  if (roots.some((r) => fs.existsSync(path.join(r, 'events')))) return;
  const dir = roots[0]!;
  const mount = env.mount ?? ((d: string) => execFileSync('mount', ['-t', 'tracefs', 'nodev', d], { stdio: 'pipe' }));
  try {
    mount(dir);
  } catch (err) {
    const why = ((err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message).split('\n')[0];
    throw new FatalError(
      `tracefs is not mounted and mounting it failed (${why}); the classic tracepoints of the tcp, l7 and fs signals need it: sudo mount -t tracefs nodev ${dir}`,
      { exitCode: EXIT.kernel, cause: err },
    );
  }
  (env.log ?? ((l: string) => console.error(l)))(`ringflow: mounted tracefs at ${dir} (classic tracepoints need it)`);
}

export function checkBuilt(signals: readonly string[]): void {
  for (const s of signals) {
    if (!fs.existsSync(objectPath(s))) {
      throw new FatalError(`BPF object ${path.relative(REPO_ROOT, objectPath(s))} is not built; run: npm run setup`, { exitCode: EXIT.build });
    }
  }
}

/** cgroup v2 id = inode number of the cgroup's directory (what bpf_get_current_cgroup_id returns). */
export function cgroupIdOf(dir: string): bigint {
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(dir, { bigint: true });
  } catch {
    throw new FatalError(`--cgroup: ${dir} does not exist; give a cgroup v2 directory such as /sys/fs/cgroup/system.slice/foo.service`, { exitCode: EXIT.usage });
  }
  if (!st.isDirectory()) throw new FatalError(`--cgroup: ${dir} is not a directory`, { exitCode: EXIT.usage });
  return st.ino;
}
