/**
 * The fs native tests' scratch tree: a directory on the root disk (under
 * /var/tmp, so the ext4 image's file and the builds are not in a tmpfs) with a
 * tmpfs and an ext4 loop image mounted in it, and the test programs built
 * there. unmountAll() runs in each file's after(), even after a failure: a
 * mount left behind would outlive the test run.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export interface FsScratch {
  dir: string;
  tmpfsDir: string;
  ext4Dir: string;
  /** Mount points to undo, in mount order; tests push their own (bind, fuse) too. */
  mounted: string[];
}

/** Makes the tree: `<prefix>XXXXXX` with tmpfs/ (tmpfsMb) and ext4/ (an ext4 image of ext4Mb on a loop device). */
export function makeFsScratch(prefix: string, tag: string, tmpfsMb: number, ext4Mb: number): FsScratch {
  const dir = realpathSync(mkdtempSync(prefix));
  const s: FsScratch = { dir, tmpfsDir: join(dir, 'tmpfs'), ext4Dir: join(dir, 'ext4'), mounted: [] };
  mkdirSync(s.tmpfsDir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsMb}m`, tag, s.tmpfsDir]);
  s.mounted.push(s.tmpfsDir);
  mkdirSync(s.ext4Dir);
  const image = join(dir, 'ext4.img');
  execFileSync('truncate', ['-s', `${ext4Mb}M`, image]);
  execFileSync('mkfs.ext4', ['-q', '-F', image]);
  execFileSync('mount', ['-o', 'loop', image, s.ext4Dir]);
  s.mounted.push(s.ext4Dir);
  return s;
}

/** Builds test/native/fs/<source> into the scratch dir; returns the binary's path. */
export function buildFsProgram(root: string, s: FsScratch, source: string, name: string, extra: string[] = []): string {
  const out = join(s.dir, name);
  execFileSync('gcc', [...extra, '-O2', '-Wall', '-Werror', '-o', out, `${root}test/native/fs/${source}`]);
  return out;
}

/** Unmounts what is still mounted (lazily when busy: detached now, freed when the last user goes) and removes the tree. */
export function unmountAll(s: FsScratch | null): void {
  if (!s) return;
  const isMounted = (m: string) => readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === m);
  for (const m of s.mounted.reverse().filter(isMounted)) {
    try {
      execFileSync('umount', [m]);
    } catch {
      execFileSync('umount', ['-l', m]);
    }
  }
  rmSync(s.dir, { recursive: true, force: true });
}
