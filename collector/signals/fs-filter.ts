/**
 * The fs signal's in-kernel filters (docs/design/fs.md section 5; BPF side:
 * bpf/fs_filter.h): --fs TYPE and --path DIR, checked here and encoded as the
 * fs object's globals (rf_fs_types*, rf_fs_prefixes*).
 *
 * A --path prefix is resolved once, at start: realpath (symlinks), stat, and
 * the directory's (dev, ino) in the kernel's dev_t encoding (s_dev), which
 * BPF compares with each ancestor of a file's dentry. Re-resolving a prefix
 * made or replaced after start (design: every 10 s) is not done yet.
 */
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { FatalError, EXIT } from '../../common/errors.ts';

export const FS_MAX_TYPES = 8; // RF_FS_MAX_TYPES
export const FS_MAX_PREFIXES = 64; // RF_FS_MAX_PREFIXES
const TYPE_BYTES = 16; // s_type->name read into 16 bytes, NUL-terminated

export interface FsPrefix {
  /** The directory as given and as resolved (for messages). */
  given: string;
  path: string;
  /** s_dev: major << 20 | minor */
  dev: number;
  ino: bigint;
}

export interface FsFilterSettings {
  types?: string[];
  prefixes?: FsPrefix[];
}

/**
 * The kernel's dev_t (major << 20 | minor, as in super_block.s_dev) of a
 * user-space st_dev (glibc's new_encode_dev: minor's low 8 bits, major's 12
 * bits from bit 8, minor's high bits from bit 20, major's high from bit 44). Pure.
 */
export function kernelDevOf(st: bigint): number {
  const major = Number(((st >> 8n) & 0xfffn) | ((st >> 32n) & ~0xfffn));
  const minor = Number((st & 0xffn) | ((st >> 12n) & ~0xffn));
  return ((major << 20) | minor) >>> 0;
}

const usage = (msg: string) => new FatalError(msg, { exitCode: EXIT.usage });

/** The types /proc/filesystems lists (its second column); null when it cannot be read. */
export function kernelFsTypes(text?: string): string[] | null {
  try {
    return (text ?? readFileSync('/proc/filesystems', 'utf8')).split('\n').map((l) => l.split('\t').at(-1)!.trim()).filter(Boolean);
  } catch {
    return null;
  }
}

/**
 * --fs values: file system type names as the kernel spells them
 * (/proc/filesystems), at most 8, each under 16 bytes. A name the kernel does
 * not list (`known`, when given) would match nothing, silently: refused. Pure.
 */
export function parseFsTypes(values: readonly string[], known: readonly string[] | null = null): string[] {
  const out: string[] = [];
  for (const raw of values.flatMap((v) => v.split(','))) {
    const t = raw.trim();
    // /proc/mounts says fuse.sshfs, but the kernel's type is fuse (the subtype is the superblock's s_subtype): never matched
    const dot = /^([a-z0-9][a-z0-9_-]*)\.[a-z0-9._-]+$/.exec(t);
    if (dot) throw usage(`--fs: "${raw}" is a subtype as /proc/mounts shows it; the filter sees the kernel's type, ${dot[1]}`);
    if (!/^[a-z0-9][a-z0-9_-]*$/.test(t) || Buffer.byteLength(t) >= TYPE_BYTES) {
      throw usage(`--fs: "${raw}" is not a file system type name (as in /proc/filesystems: e.g. ext4, xfs, tmpfs, fuse; under ${TYPE_BYTES} bytes)`);
    }
    if (known && !known.includes(t)) throw usage(`--fs: "${t}" is not a file system type this kernel knows (/proc/filesystems: ${known.join(', ')})`);
    if (!out.includes(t)) out.push(t);
  }
  if (out.length > FS_MAX_TYPES) throw usage(`--fs: ${out.length} types given; at most ${FS_MAX_TYPES}`);
  return out;
}

/** --path values resolved now: each must be an existing directory (else one line, exit 2). */
export function resolveFsPrefixes(values: readonly string[]): FsPrefix[] {
  const out: FsPrefix[] = [];
  for (const given of values) {
    if (given === '') throw usage('--path: an empty prefix');
    let path: string;
    try {
      path = realpathSync(given);
    } catch (err) {
      throw usage(`--path: ${given}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}`);
    }
    const st = statSync(path, { bigint: true });
    if (!st.isDirectory()) throw usage(`--path: ${given} is not a directory`);
    const p = { given, path, dev: kernelDevOf(st.dev), ino: st.ino };
    if (!out.some((x) => x.dev === p.dev && x.ino === p.ino)) out.push(p);
  }
  if (out.length > FS_MAX_PREFIXES) throw usage(`--path: ${out.length} prefixes given; at most ${FS_MAX_PREFIXES}`);
  return out;
}

/** The fs object's filter globals (bpf/fs_filter.h); none when no filter is set, so the object's defaults (off) hold. Pure. */
export function encodeFsFilterSettings(s: FsFilterSettings): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  const types = s.types ?? [];
  if (types.length > 0) {
    const names = Buffer.alloc(FS_MAX_TYPES * TYPE_BYTES);
    types.forEach((t, i) => names.write(t, i * TYPE_BYTES, TYPE_BYTES - 1, 'utf8'));
    const n = Buffer.alloc(4);
    n.writeUInt32LE(types.length);
    out.rf_fs_types_n = n;
    out.rf_fs_types = names;
  }
  const prefixes = s.prefixes ?? [];
  if (prefixes.length > 0) {
    const table = Buffer.alloc(FS_MAX_PREFIXES * 16); // struct rf_fs_prefix { u64 ino; u32 dev; u32 pad; }
    prefixes.forEach((p, i) => {
      table.writeBigUInt64LE(p.ino, i * 16);
      table.writeUInt32LE(p.dev, i * 16 + 8);
    });
    const n = Buffer.alloc(4);
    n.writeUInt32LE(prefixes.length);
    out.rf_fs_prefixes_n = n;
    out.rf_fs_prefixes = table;
  }
  return out;
}
